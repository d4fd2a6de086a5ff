"""FACS action units from the 53 ICT-FaceKit expression coefficients.

The correspondence is ICT-FaceKit's own ("Our expression shapes closest relation to FACS units",
its README): each action unit below is the listed template, or the mean of the two (left + right
halves, or the two eyes' shapes of one gaze direction). AU30 (jaw sideways) has one template per
direction; its intensity is the larger of the two, as hri_msgs/FacialActionUnits holds one value per
unit. Action units without a template (AU8, AU13, AU19, AU21, AU23, AU25, AU26, the head movement,
visibility and gross behaviour codes) are not estimated.

    au, intensity = action_units(names, coefficients)   # (28,) codes, (28,) in [0, 1]

:data:`FACS_UNITS` is the one table: the node's ``/facs`` output and docs/node.md's table
(:func:`facs_markdown`, a test checks they agree) both come from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class FacsUnit:
    """One action unit: its FACS code, name, the templates it comes from and how they combine."""

    code: int
    name: str
    templates: tuple[str, ...]
    combine: str = "mean"  # "mean" of the templates, or "max" (AU30: one template per direction)


FACS_UNITS: tuple[FacsUnit, ...] = (
    FacsUnit(1, "Inner brow raiser", ("browInnerUp_L", "browInnerUp_R")),
    FacsUnit(2, "Outer brow raiser", ("browOuterUp_L", "browOuterUp_R")),
    FacsUnit(4, "Brow lowerer", ("browDown_L", "browDown_R")),
    FacsUnit(5, "Upper lid raiser", ("eyeWide_L", "eyeWide_R")),
    FacsUnit(6, "Cheek raiser", ("cheekSquint_L", "cheekSquint_R")),
    FacsUnit(7, "Lid tightener", ("eyeSquint_L", "eyeSquint_R")),
    FacsUnit(9, "Nose wrinkler", ("noseSneer_L", "noseSneer_R")),
    FacsUnit(10, "Upper lip raiser", ("mouthShrugUpper",)),
    FacsUnit(11, "Nasolabial deepener", ("mouthUpperUp_L", "mouthUpperUp_R")),
    FacsUnit(12, "Lip corner puller", ("mouthSmile_L", "mouthSmile_R")),
    FacsUnit(14, "Dimpler", ("mouthDimple_L", "mouthDimple_R")),
    FacsUnit(15, "Lip corner depressor", ("mouthFrown_L", "mouthFrown_R")),
    FacsUnit(16, "Lower lip depressor", ("mouthLowerDown_L", "mouthLowerDown_R")),
    FacsUnit(17, "Chin raiser", ("mouthShrugLower",)),
    FacsUnit(18, "Lip pucker", ("mouthPucker",)),
    FacsUnit(20, "Lip stretcher", ("mouthStretch_L", "mouthStretch_R")),
    FacsUnit(22, "Lip funneler", ("mouthFunnel",)),
    FacsUnit(24, "Lip pressor", ("mouthPress_L", "mouthPress_R")),
    FacsUnit(27, "Mouth stretch", ("jawOpen",)),
    FacsUnit(28, "Lip suck", ("mouthRollLower", "mouthRollUpper")),
    FacsUnit(29, "Jaw thrust", ("jawForward",)),
    FacsUnit(30, "Jaw sideways", ("jawLeft", "jawRight"), combine="max"),
    FacsUnit(33, "Cheek blow", ("cheekPuff_L", "cheekPuff_R")),
    FacsUnit(45, "Blink", ("eyeBlink_L", "eyeBlink_R")),
    FacsUnit(61, "Eyes turn left", ("eyeLookOut_L", "eyeLookIn_R")),
    FacsUnit(62, "Eyes turn right", ("eyeLookOut_R", "eyeLookIn_L")),
    FacsUnit(63, "Eyes up", ("eyeLookUp_L", "eyeLookUp_R")),
    FacsUnit(64, "Eyes down", ("eyeLookDown_L", "eyeLookDown_R")),
)
FACS_CODES = np.array([u.code for u in FACS_UNITS], np.int64)


def action_units(names: Sequence[str], coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, intensities) of :data:`FACS_UNITS` from expression ``coefficients``.

    Args:
        names: (E,) the coefficients' template names (the model's 53).
        coefficients: (E,) in [0, 1].
    Returns:
        (U,) int64 FACS codes and (U,) float32 intensities in [0, 1], in :data:`FACS_UNITS` order.
    Raises:
        ValueError: a template of the table is missing from ``names``, or the lengths differ.
    """
    values = np.asarray(coefficients, np.float64).reshape(-1)
    if len(values) != len(names):
        raise ValueError(f"{len(values)} coefficients for {len(names)} names")
    first, second, is_max = _template_indices(tuple(names))
    a, b = values[first], values[second]  # one-template units: a == b
    out = np.where(is_max, np.maximum(a, b), 0.5 * (a + b))
    return FACS_CODES.copy(), np.clip(out, 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=8)
def _template_indices(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per unit: index of its first and second template in ``names`` (the same for one-template
    units) and whether it combines by max."""
    index = {name: i for i, name in enumerate(names)}
    missing = sorted({t for u in FACS_UNITS for t in u.templates} - set(index))
    if missing:
        raise ValueError(f"expression names lack the FACS templates {missing}")
    first = np.array([index[u.templates[0]] for u in FACS_UNITS])
    second = np.array([index[u.templates[-1]] for u in FACS_UNITS])
    return first, second, np.array([u.combine == "max" for u in FACS_UNITS])


def facs_markdown() -> str:
    """docs/node.md's FACS table (generated from :data:`FACS_UNITS`)."""
    rows = ["| AU | name | from the coefficients |", "|---|---|---|"]
    for u in FACS_UNITS:
        how = (" + ".join(f"`{t}`" for t in u.templates) if len(u.templates) == 1 else
               f"{u.combine}({', '.join(f'`{t}`' for t in u.templates)})")
        rows.append(f"| {u.code} | {u.name} | {how} |")
    return "\n".join(rows) + "\n"
