"""The ARKit-52 view of the 53 ICT expression coefficients (export to animation tools).

ICT-FaceKit's templates are Apple ARKit's blendshapes with ``_L``/``_R`` for the subject's
left/right, ``browInnerUp`` and ``cheekPuff`` split in two halves, and no ``tongueOut``. The ARKit view
(DESIGN.md, "Conventions"): ``_L`` -> ``Left``, ``_R`` -> ``Right``; the split pairs are merged by
their mean; ``tongueOut`` is 0 (the model has no tongue template, so it is never estimated).

The order of :data:`ARKIT_NAMES` is ARKit's ``ARFaceAnchor.BlendShapeLocation`` order as used by
Epic's Live Link Face app (its CSV columns and network packets, Unreal's ``EARFaceBlendShape``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
"""The 52 ARKit blendshape names, Live Link Face order."""

LIVE_LINK_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
"""The same names as Live Link Face's CSV header spells them (``EyeBlinkLeft``, ...)."""

MERGED = ("browInnerUp", "cheekPuff")
"""ARKit shapes that ICT splits into ``_L``/``_R`` halves: their ARKit value is the halves' mean."""
NOT_IN_MODEL = ("tongueOut",)
"""ARKit shapes the face model has no template for: always 0."""


UNSIDED = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")
"""Shapes whose ``Left``/``Right`` is a direction of motion, not a side of the face: same name in ICT."""


def ict_sources(arkit_name: str) -> tuple[str, ...]:
    """The ICT names whose mean gives ``arkit_name`` (empty for :data:`NOT_IN_MODEL`)."""
    if arkit_name in NOT_IN_MODEL:
        return ()
    if arkit_name in MERGED:
        return (f"{arkit_name}_L", f"{arkit_name}_R")
    if arkit_name not in UNSIDED:
        for side, suffix in (("Left", "_L"), ("Right", "_R")):
            if arkit_name.endswith(side):
                return (arkit_name[: -len(side)] + suffix,)
    return (arkit_name,)


def arkit_matrix(ict_names: Sequence[str]) -> np.ndarray:
    """(52, E) averaging matrix M with ``arkit = M @ ict`` for coefficients in ``ict_names`` order.

    Raises:
        ValueError: an ARKit shape's ICT source is not among ``ict_names`` (not an ICT model).
    """
    index = {name: i for i, name in enumerate(ict_names)}
    matrix = np.zeros((len(ARKIT_NAMES), len(ict_names)))
    for row, name in enumerate(ARKIT_NAMES):
        sources = ict_sources(name)
        missing = [s for s in sources if s not in index]
        if missing:
            raise ValueError(f"ARKit shape {name!r} needs {', '.join(missing)}, which the face "
                             f"model's {len(ict_names)} expression names do not have")
        for source in sources:
            matrix[row, index[source]] = 1.0 / len(sources)
    return matrix


def to_arkit(ict_names: Sequence[str], coefficients: np.ndarray) -> np.ndarray:
    """(..., 52) ARKit coefficients, :data:`ARKIT_NAMES` order, from (..., E) ICT coefficients."""
    values = np.asarray(coefficients, np.float64)
    if values.shape[-1] != len(ict_names):
        raise ValueError(f"coefficients have {values.shape[-1]} values for {len(ict_names)} names")
    return values @ arkit_matrix(ict_names).T


def arkit_dict(ict_names: Sequence[str], coefficients: np.ndarray) -> dict[str, float]:
    """``{arkit_name: value}`` for one face, :data:`ARKIT_NAMES` order."""
    return dict(zip(ARKIT_NAMES, (float(v) for v in to_arkit(ict_names, coefficients))))
