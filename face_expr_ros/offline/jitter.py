"""Frame-to-frame jitter of ``face_expr video``'s JSON lines (bench/jitter.py, the tests).

On a clip whose head does not move, every change between frames is noise. Per quantity: the
standard deviation over the clip and the mean absolute change between consecutive frames; for the
expression, the mean of these over the coefficients.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANGLES = ("yaw", "pitch", "roll")


@dataclass(frozen=True)
class Jitter:
    """Jitter of one run: per angle (degrees) and over the expression coefficients.

    Attributes:
        frames: frames with the tracked face that were measured.
        angle_std, angle_step: (3,) yaw, pitch, roll: std over the clip, mean |frame-to-frame change|.
        coefficient_std, coefficient_step: the same, averaged over the expression coefficients.
    """

    frames: int
    angle_std: np.ndarray
    angle_step: np.ndarray
    coefficient_std: float
    coefficient_step: float


def read_track(jsonl: Path, track_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Euler angles (F, 3) and coefficients (F, E) of one track over the frames that show it.

    ``track_id``: default the id of the first face in the file.
    """
    angles, coefficients = [], []
    for line in Path(jsonl).read_text(encoding="utf-8").splitlines():
        faces = json.loads(line)["faces"]
        if track_id is None and faces:
            track_id = faces[0]["id"]
        face = next((f for f in faces if f["id"] == track_id), None)
        if face is not None:
            euler = face["pose"]["euler_deg"]
            angles.append([euler[a] for a in ANGLES])
            coefficients.append(list(face["expression"].values()))
    return np.asarray(angles, float).reshape(-1, 3), np.asarray(coefficients, float)


def measure(angles: np.ndarray, coefficients: np.ndarray) -> Jitter:
    """Jitter of a track: angles (F, 3) degrees, coefficients (F, E); needs F >= 2."""
    if len(angles) < 2:
        raise ValueError(f"jitter needs at least 2 frames with the face, got {len(angles)}")
    return Jitter(frames=len(angles),
                  angle_std=angles.std(axis=0),
                  angle_step=np.abs(np.diff(angles, axis=0)).mean(axis=0),
                  coefficient_std=float(coefficients.std(axis=0).mean()),
                  coefficient_step=float(np.abs(np.diff(coefficients, axis=0)).mean()))
