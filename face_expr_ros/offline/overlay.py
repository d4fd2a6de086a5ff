"""Overlay images of reconstructed faces: the posed expression mesh, the 68 landmarks, box and label.

The mesh is what the method produced: synthesised from the selected templates and the identity,
posed with the face's rotation, scale and translation (``Face.image_vertices``), so a reader can
judge at a glance whether the reconstruction sits on the face.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..core.reconstruct import Face
from ..core.render import draw_landmarks, region_triangles, render_mesh

MESH_RGB = (120, 180, 255)
BOX_RGB = (255, 200, 0)
MESH_ALPHA = 0.5


def draw_overlay(rgb: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """A copy of the (H, W, 3) uint8 RGB image with every face's posed mesh (face area),
    landmarks, box and label."""
    out = np.ascontiguousarray(rgb)
    if faces:
        triangles = region_triangles(faces[0].model, "face")  # one model for all faces
    for face in faces:
        out = render_mesh(face.image_vertices(), triangles, out, color=MESH_RGB, alpha=MESH_ALPHA)
        side = float(face.box[2] - face.box[0])
        out = draw_landmarks(out, face.landmarks, radius=max(1.2, side / 70))
        _draw_box(out, face)
    return out if faces else out.copy()


def _draw_box(image: np.ndarray, face: Face) -> None:
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    cv2.rectangle(image, (x0, y0), (x1, y1), BOX_RGB, 2)
    yaw, pitch, roll = face.euler_deg
    top = face.names[int(face.selected[0])] if len(face.selected) else "neutral"
    text = f"{face.id + ' ' if face.id else ''}yaw {yaw + 0:+.0f} pitch {pitch + 0:+.0f} roll {roll + 0:+.0f} {top}"
    scale = max(0.4, min(1.0, (x1 - x0) / 300))
    cv2.putText(image, text, (x0, max(14, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, scale, BOX_RGB, 1,
                cv2.LINE_AA)
