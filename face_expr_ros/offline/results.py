"""Per-image results of ``face_expr reconstruct``: faces mapped back to the full image, and the
files written for them (JSON, overlay, meshes). Every file is written atomically.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.export import write_bytes_atomic, write_image, write_obj, write_ply
from ..core.face_json import image_record
from ..core.gltf import MorphMesh, write_glb
from ..core.imageio import LoadedImage
from ..core.reconstruct import Face
from ..core.synthesis import identity_shape
from .overlay import draw_overlay

CM_TO_M = 0.01


def to_full_image(face: Face, reduction: int) -> Face:
    """A copy of a face found in an image decoded at 1/``reduction`` scale, in full-image pixels.

    A decoded pixel ``i`` covers full pixels ``r*i .. r*i + r - 1`` (centre ``r*i + (r-1)/2``); box
    edges are continuous coordinates (``r*x``). The face itself is not changed.
    """
    if reduction == 1:
        return face
    r = float(reduction)
    return dataclasses.replace(face, box=np.asarray(face.box, np.float64) * r,
                               landmarks=np.asarray(face.landmarks, np.float64) * r + (r - 1) / 2,
                               translation=np.asarray(face.translation, np.float64) * r + (r - 1) / 2,
                               scale=face.scale * r)


def write_json(path: Path, image_name: str, loaded: LoadedImage, faces: Sequence[Face],
               arkit: bool) -> Path:
    record = image_record(image_name, loaded.width, loaded.height, faces, arkit=arkit)
    text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_overlay(path: Path, loaded: LoadedImage, faces: Sequence[Face]) -> Path:
    """The overlay over the decoded image; ``faces`` in its pixels (as the reconstructor gave them)."""
    return write_image(path, draw_overlay(loaded.rgb, faces))


def write_mesh(path: Path, face: Face, fmt: str) -> Path:
    """The face's expression mesh: OBJ/PLY in model space (cm, the synthesised mesh from the
    selected templates); GLB in metres with all templates as morph targets and the pose's rotation."""
    if fmt == "glb":
        return write_glb(path, morph_mesh(face), name=path.stem)
    vertices, triangles = face.model_vertices(), face.model.triangles
    return write_obj(path, vertices, triangles) if fmt == "obj" else write_ply(path, vertices, triangles)


def morph_mesh(face: Face) -> MorphMesh:
    """Base = the person's neutral shape; targets = the E templates; weights = the coefficients of
    the selected templates (0 for the others), so the default shape is the synthesised mesh."""
    model = face.model
    weights = np.zeros(model.n_expressions)
    weights[face.selected] = face.coefficients[face.selected]
    return MorphMesh(base=identity_shape(model, face.identity) * CM_TO_M,
                     triangles=model.triangles,
                     targets=model.expression_basis * CM_TO_M,
                     target_names=model.expression_names, weights=weights,
                     rotation=face.rotation,
                     extras={"coefficients": [float(c) for c in face.coefficients],
                             "units": "metres", "source": "face_expr_ros, ICT-FaceKit face model (MIT)"})
