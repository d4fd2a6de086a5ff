"""The JSON contract of offline results (``face_expr reconstruct``, ``face_expr video``'s JSON lines).

One image -> one record; other tools read it, so its shape is fixed (README, "Offline results")::

    {"image": str, "width": int, "height": int,
     "faces": [{"box": [x0, y0, x1, y1], "score": float,
                "expression": {name: float, ...},          # 53 ICT names, or the 52 ARKit names
                "selected_templates": [name, ...],         # ICT template names, largest first
                "identity": [float, ...],
                "pose": {"euler_deg": {"yaw": f, "pitch": f, "roll": f},
                         "rotation_matrix": [[...], [...], [...]],
                         "translation": [x, y, z], "scale": f},
                "landmarks68": [[x, y], ... 68]}]}          # faces sorted by box area, largest first

Pose is the core convention (docs/conventions.md): ``posed = scale * R @ V + translation`` maps model
centimetres to image pixels in a frame with x right, y up, z towards the viewer, whose origin is the
image centre ``((W - 1) / 2, (H - 1) / 2)``; the projection is orthographic, so z of the translation
is 0. Pixel ``u = x + cx``, ``v = cy - y``. Landmarks and boxes are pixels of the input image (x right,
y down, 0-based, iBUG 68 order).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .arkit import ARKIT_NAMES, arkit_dict
from .reconstruct import Face

FACE_KEYS = ("box", "score", "expression", "selected_templates", "identity", "pose", "landmarks68")
RECORD_KEYS = ("image", "width", "height", "faces")
POSE_KEYS = ("euler_deg", "rotation_matrix", "translation", "scale")


def core_translation(face: Face, width: int, height: int) -> list[float]:
    """The core pose's translation (pixels, y up, origin at the image centre, z = 0)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    u, v = (float(x) for x in face.translation)
    return [u - cx, cy - v, 0.0]


def face_to_dict(face: Face, width: int, height: int, arkit: bool = False) -> dict[str, Any]:
    """One face in the contract's shape; ``arkit``: the expression as the 52 ARKit names."""
    yaw, pitch, roll = (float(a) for a in face.euler_deg)
    if arkit:
        expression = arkit_dict(face.names, face.coefficients)
    else:
        expression = {n: float(c) for n, c in zip(face.names, face.coefficients)}
    return {
        "box": [float(x) for x in face.box],
        "score": float(face.score),
        "expression": expression,
        "selected_templates": [face.names[int(i)] for i in face.selected],
        "identity": [float(x) for x in face.identity],
        "pose": {
            "euler_deg": {"yaw": yaw, "pitch": pitch, "roll": roll},
            "rotation_matrix": np.asarray(face.rotation, float).tolist(),
            "translation": core_translation(face, width, height),
            "scale": float(face.scale),
        },
        "landmarks68": np.asarray(face.landmarks, float).reshape(68, 2).tolist(),
    }


def image_record(image: str, width: int, height: int, faces: Sequence[Face],
                 arkit: bool = False, track_ids: bool = False) -> dict[str, Any]:
    """The record of one image; faces sorted by box area, largest first. ``track_ids``: each face
    starts with its tracking ``"id"`` (video JSON lines; not part of the photo contract)."""
    ordered = sorted(faces, key=lambda f: -f.area)
    return {"image": str(image), "width": int(width), "height": int(height),
            "faces": [{**({"id": f.id} if track_ids else {}), **face_to_dict(f, width, height, arkit)}
                      for f in ordered]}


class ContractError(ValueError):
    """A record does not have the contract's shape (the message says where)."""


def validate_record(record: Any, expression_names: Sequence[str] | None = None) -> None:
    """Check ``record`` against the contract (keys, types, lengths, finite numbers, area order).

    ``expression_names``: the expected names (default: 53 names of any kind or the ARKit 52).
    Raises:
        ContractError: the first deviation found.
    """
    _expect(isinstance(record, dict) and tuple(record) == RECORD_KEYS,
            f"record keys must be {RECORD_KEYS}, got {tuple(record) if isinstance(record, dict) else type(record)}")
    _expect(isinstance(record["image"], str), "image must be a string")
    for key in ("width", "height"):
        _expect(isinstance(record[key], int) and record[key] > 0, f"{key} must be a positive int")
    _expect(isinstance(record["faces"], list), "faces must be a list")
    areas = []
    for i, face in enumerate(record["faces"]):
        _validate_face(face, f"faces[{i}]", expression_names)
        x0, y0, x1, y1 = face["box"]
        areas.append((x1 - x0) * (y1 - y0))
    _expect(areas == sorted(areas, reverse=True), "faces must be sorted by box area, largest first")


def _validate_face(face: Any, where: str, names: Sequence[str] | None) -> None:
    _expect(isinstance(face, dict) and tuple(face) == FACE_KEYS, f"{where}: keys must be {FACE_KEYS}")
    _numbers(face["box"], 4, f"{where}.box")
    _numbers([face["score"]], 1, f"{where}.score")
    expression = face["expression"]
    _expect(isinstance(expression, dict), f"{where}.expression must be an object")
    if names is not None:
        _expect(list(expression) == list(names), f"{where}.expression names differ from the expected")
    else:
        _expect(len(expression) == 53 or tuple(expression) == ARKIT_NAMES,
                f"{where}.expression must have the 53 model names or the 52 ARKit names")
    _numbers(list(expression.values()), len(expression), f"{where}.expression")
    _expect(all(0.0 <= v <= 1.0 for v in expression.values()), f"{where}.expression outside [0, 1]")
    _expect(isinstance(face["selected_templates"], list)
            and all(isinstance(n, str) for n in face["selected_templates"]),
            f"{where}.selected_templates must be a list of names")
    _numbers(face["identity"], len(face["identity"]), f"{where}.identity")
    pose = face["pose"]
    _expect(isinstance(pose, dict) and tuple(pose) == POSE_KEYS, f"{where}.pose keys must be {POSE_KEYS}")
    _expect(tuple(pose["euler_deg"]) == ("yaw", "pitch", "roll"), f"{where}.pose.euler_deg keys")
    _numbers(list(pose["euler_deg"].values()), 3, f"{where}.pose.euler_deg")
    _expect(isinstance(pose["rotation_matrix"], list) and len(pose["rotation_matrix"]) == 3,
            f"{where}.pose.rotation_matrix must be 3 rows")
    for row in pose["rotation_matrix"]:
        _numbers(row, 3, f"{where}.pose.rotation_matrix")
    _numbers(pose["translation"], 3, f"{where}.pose.translation")
    _numbers([pose["scale"]], 1, f"{where}.pose.scale")
    _expect(isinstance(face["landmarks68"], list) and len(face["landmarks68"]) == 68,
            f"{where}.landmarks68 must have 68 points")
    for point in face["landmarks68"]:
        _numbers(point, 2, f"{where}.landmarks68")


def _numbers(values: Any, count: int, where: str) -> None:
    _expect(isinstance(values, list) and len(values) == count, f"{where} must be a list of {count}")
    _expect(all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values), f"{where} must hold finite numbers")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)
