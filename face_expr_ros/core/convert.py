"""Build the compact face model file from the upstream ICT-FaceKit distribution.

Input: the ``FaceXModel`` folder of https://github.com/ICT-VGL/ICT-FaceKit (MIT): the neutral
``generic_neutral_mesh.obj``, one OBJ per identity mode (``identity000.obj`` ...) and per expression
(named in ``vertex_indices.json``), all with the same vertices (26,719 in the upstream release), and
``vertex_indices.json`` (expression order, 68 landmark vertices, fitting vertices).
Output: ``ict_face_model.npz`` as loaded by :func:`face_expr_ros.core.facemodel.load_face_model`.
Identity and expression OBJs are stored as offsets from the neutral mesh.

The compact form (``compact=True``, or :func:`compact_face_model` from a full ``.npz``) keeps only
what inference and training load (neutral, triangles, both bases, expression names, the 68 landmark
vertices, the face-area vertex count) and stores each basis mode as 16-bit integers with one float32
scale per mode (:data:`QUANTIZED_SUFFIX`; the loader restores float32). float16 was measured first
and rejected: its synthesis error reaches 0.055 mm (identity) and 0.019 mm (expression), above the
0.01 mm allowed; the per-mode integers stay at 0.0046 and 0.0021 mm (docs/face_model.md,
test/test_core_convert.py).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .export import write_bytes_atomic
from .facemodel import FaceModelError, face_model_from_arrays

# ICT-FaceKit's documented vertex ranges (its README, "Face model"): 0..9408 face, 9409..11247 head
# and neck; the rest (eyes, mouth socket, teeth, lashes) is not used by this project.
ICT_KEPT_VERTICES = 11248
ICT_FACE_AREA_VERTICES = 9409
ICT_NARROW_FACE_VERTICES = 6706
NEUTRAL_OBJ = "generic_neutral_mesh.obj"
CONFIG_JSON = "vertex_indices.json"


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangles (T, 3) int64 (0-based; polygons fanned) of an OBJ."""
    vertices: list[str] = []
    faces: list[list[int]] = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise FaceModelError(f"cannot read {path}: {err.strerror}") from None
    for line in text.splitlines():
        if line.startswith("v "):
            vertices.append(line[2:])
        elif line.startswith("f "):
            # "f 1/1/1 2/2/2 3/3/3 4/4/4": keep the vertex index before the first slash
            faces.append([int(tok.split("/")[0]) for tok in line[2:].split()])
    if not vertices:
        raise FaceModelError(f"{path}: no vertices ('v x y z' lines) found")
    try:
        v = np.array(" ".join(vertices).split(), dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise FaceModelError(f"{path}: vertex lines are not three numbers each") from None
    tris = [(f[0], f[i], f[i + 1]) for f in faces for i in range(1, len(f) - 1)]
    t = np.array(tris, dtype=np.int64).reshape(-1, 3)
    t = np.where(t < 0, t + len(v), t - 1)  # OBJ indices are 1-based; negatives count back
    return v, t


def build_face_model(src_dir: str | os.PathLike, out_path: str | os.PathLike,
                     keep_vertices: int = ICT_KEPT_VERTICES,
                     face_area_vertices: int = ICT_FACE_AREA_VERTICES, compact: bool = False) -> Path:
    """Convert an ICT-FaceKit ``FaceXModel`` folder to the compact ``.npz`` and validate it.

    Args:
        src_dir: folder with ``vertex_indices.json``, ``generic_neutral_mesh.obj``,
            ``identityNNN.obj`` and one OBJ per expression.
        out_path: file to write (written to a temporary name, then renamed).
        keep_vertices: keep vertices ``0..keep_vertices-1`` and the triangles among them.
        face_area_vertices: vertices ``0..n-1`` are the face area.
    Returns:
        The written path.
    """
    src = Path(src_dir)
    config = _read_config(src)
    neutral, triangles = read_obj(src / NEUTRAL_OBJ)
    keep = min(keep_vertices, len(neutral))
    identity_names = _identity_names(src)
    expression_names = [str(n) for n in config["expressions"]]
    identity = _offsets(src, identity_names, neutral, keep)
    expression = _offsets(src, expression_names, neutral, keep)
    landmarks = np.asarray(config["idx_to_landmark_verts"], dtype=np.int32)
    arrays = {
        "neutral": neutral[:keep].astype(np.float32),
        "triangles": triangles[(triangles < keep).all(axis=1)].astype(np.int32),
        "identity_basis": identity,
        "identity_names": np.array(identity_names),
        "expression_basis": expression,
        "expression_names": np.array(expression_names),
        "landmarks68": landmarks,
        "face_area_vertex_count": np.int32(min(face_area_vertices, keep)),
        "narrow_face_vertex_count": np.int32(min(ICT_NARROW_FACE_VERTICES, keep)),
    }
    fitting = np.asarray(config.get("idx_to_fitting_verts", []), dtype=np.int32)
    arrays["fitting_vertices"] = fitting[fitting < keep]
    face_model_from_arrays(arrays, path=str(src))  # validate before writing anything
    if compact:
        arrays = compact_arrays(arrays)
    return _write_npz_atomic(Path(out_path), arrays)


QUANTIZED_BASES = ("identity_basis", "expression_basis")
QUANTIZED_SUFFIX = ("_int16", "_scale")
"""A basis ``B`` (N, V, 3) is stored as ``B_int16`` (N, V, 3) int16 and ``B_scale`` (N,) float32:
``B = B_int16 * B_scale[:, None, None]``."""


def compact_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The compact model's arrays from a full model's (see the module docstring)."""
    n_vertices = len(arrays["neutral"])
    out = {
        "neutral": np.asarray(arrays["neutral"], np.float32),
        "triangles": np.asarray(arrays["triangles"],
                                np.uint16 if n_vertices <= np.iinfo(np.uint16).max else np.int32),
        "expression_names": np.asarray(arrays["expression_names"]),
        "landmarks68": np.asarray(arrays["landmarks68"], np.int32),
        "face_area_vertex_count": np.int32(arrays.get("face_area_vertex_count", n_vertices)),
    }
    for name in QUANTIZED_BASES:
        quantized, scale = quantize_modes(np.asarray(arrays[name]))
        out[name + QUANTIZED_SUFFIX[0]], out[name + QUANTIZED_SUFFIX[1]] = quantized, scale
    return out


def quantize_modes(basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, V, 3) float -> (N, V, 3) int16 and (N,) float32 scales, one per mode (max |value| maps to
    32767; an all-zero mode gets scale 1)."""
    values = np.asarray(basis, np.float64)
    peak = np.abs(values).reshape(len(values), -1).max(axis=1)
    scale = np.where(peak > 0, peak / np.iinfo(np.int16).max, 1.0).astype(np.float32)
    quantized = np.rint(values / scale.astype(np.float64)[:, None, None])
    return quantized.astype(np.int16), scale


def compact_face_model(src_npz: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the compact model of the full ``ict_face_model.npz`` at ``src_npz`` to ``out_path``.

    Raises:
        FaceModelError: the source is not a valid face model.
    """
    src = Path(src_npz).expanduser()
    try:
        with np.load(src, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FaceModelError(f"{src}: not a readable .npz face model ({err})") from None
    face_model_from_arrays(arrays, path=str(src))
    compact = compact_arrays(arrays)
    face_model_from_arrays(compact, path=f"compact form of {src}")
    return _write_npz_atomic(Path(out_path), compact)


def _read_config(src: Path) -> dict:
    path = src / CONFIG_JSON
    if not path.is_file():
        raise FaceModelError(f"{src} is not an ICT-FaceKit FaceXModel folder: {CONFIG_JSON} missing")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise FaceModelError(f"{path}: not readable JSON ({err})") from None
    for key in ("expressions", "idx_to_landmark_verts"):
        if key not in config:
            raise FaceModelError(f"{path}: key {key!r} missing")
    if len(config["idx_to_landmark_verts"]) != 68:
        raise FaceModelError(f"{path}: idx_to_landmark_verts has {len(config['idx_to_landmark_verts'])}"
                             " entries, expected 68")
    return config


def _identity_names(src: Path) -> list[str]:
    names = []
    while (src / f"identity{len(names):03d}.obj").is_file():
        names.append(f"identity{len(names):03d}")
    if not names:
        raise FaceModelError(f"{src}: no identity000.obj (identity modes) found")
    return names


def _offsets(src: Path, names: list[str], neutral: np.ndarray, keep: int) -> np.ndarray:
    """(N, keep, 3) float32 offsets ``mesh - neutral`` of the OBJs ``src/<name>.obj``."""
    out = np.empty((len(names), keep, 3), dtype=np.float32)
    for i, name in enumerate(names):
        path = src / f"{name}.obj"
        if not path.is_file():
            raise FaceModelError(f"{src}: {path.name} missing (named in {CONFIG_JSON})")
        vertices, _ = read_obj(path)
        if vertices.shape != neutral.shape:
            raise FaceModelError(f"{path}: {len(vertices)} vertices, the neutral mesh has {len(neutral)}")
        out[i] = vertices[:keep] - neutral[:keep]
    return out


def _write_npz_atomic(out: Path, arrays: dict[str, np.ndarray]) -> Path:
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # the model is ~20 MB compressed: built in memory, written once
    np.savez_compressed(buffer, **arrays)
    return write_bytes_atomic(out, buffer.getvalue())
