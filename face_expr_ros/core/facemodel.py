"""The morphable face model (ICT-FaceKit, MIT): loading, validation and where to find it.

A face mesh is ``neutral + identity_basis^T alpha + expression_basis^T beta`` (centimetres, +y up,
+z out of the face, +x the subject's left). The compact file format is described in
``docs/face_model.md``; ``face_expr model build`` makes it from the upstream ICT-FaceKit folder.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_VAR = "FACE_EXPR_FACE_MODEL"
FILE_NAME = "ict_face_model.npz"
N_LANDMARKS = 68
PACKAGED_FACE_MODEL = Path(__file__).resolve().parents[1] / "facemodel" / FILE_NAME
"""The compact ICT face model shipped with the package (docs/face_model.md)."""
# Landmarks 0-16 are the jaw; 17-67 brows, nose, eyes and mouth (iBUG 68 order).
N_JAW = 17


class FaceModelError(RuntimeError):
    """The face model file is missing, unreadable, or holds arrays of the wrong shape or type."""


@dataclass(frozen=True)
class FaceModel:
    """Arrays of the morphable model. ``V`` vertices, ``K`` identity modes, ``E`` expressions.

    Attributes:
        neutral: (V, 3) float32 generic neutral face, cm.
        triangles: (T, 3) int32 vertex indices, counter-clockwise seen from outside.
        identity_basis: (K, V, 3) float32 identity modes, one standard deviation each.
        expression_basis: (E, V, 3) float32 expression templates as offsets from neutral.
        identity_names, expression_names: names of the modes / templates.
        landmarks68: (68,) int32 vertex of each iBUG landmark (the jaw ones are static
            substitutes; the dynamic jaw is computed by ``core.contour``).
        face_area_vertex_count: vertices ``0..n-1`` are the face area (no back of the head).
        path: where the model was loaded from ("" when built in memory).
    """

    neutral: np.ndarray
    triangles: np.ndarray
    identity_basis: np.ndarray
    expression_basis: np.ndarray
    identity_names: tuple[str, ...]
    expression_names: tuple[str, ...]
    landmarks68: np.ndarray
    face_area_vertex_count: int
    path: str = ""

    @property
    def n_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def n_identity(self) -> int:
        return int(self.identity_basis.shape[0])

    @property
    def n_expressions(self) -> int:
        return int(self.expression_basis.shape[0])

    def expression_index(self, name: str) -> int:
        """Index of the template ``name``; raises ``KeyError`` naming close matches."""
        try:
            return self.expression_names.index(name)
        except ValueError:
            raise KeyError(unknown_name_message(name, self.expression_names)) from None


def unknown_name_message(name: str, known: tuple[str, ...] | list[str]) -> str:
    """'unknown expression X; did you mean A, B?' with difflib's close matches."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    if not close:
        low = name.lower()
        close = [k for k in known if low in k.lower()][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    return f"unknown expression name {name!r}{hint}"


def default_search_paths() -> list[Path]:
    """Places searched when neither an explicit path nor ``FACE_EXPR_FACE_MODEL`` is given."""
    here = Path(__file__).resolve()
    places: list[Path] = []
    # ../shared/facemodel beside the checkout (development, CI): <repo>/face_expr_ros/core/facemodel.py
    repo = here.parents[2]
    places.append(repo.parent / "shared" / "facemodel" / FILE_NAME)
    # The package's share folder (colcon install: <prefix>/share/face_expr_ros/facemodel).
    share = _share_dir()
    if share is not None:
        places.append(share / "facemodel" / FILE_NAME)
    # A per-user data folder (XDG).
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    places.append(data_home / "face_expr_ros" / FILE_NAME)
    # Last: the compact model shipped inside the package (face_expr_ros/facemodel/), so a fresh
    # clone or a pip install runs without anything else.
    places.append(PACKAGED_FACE_MODEL)
    return places


def _share_dir() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        return Path(get_package_share_directory("face_expr_ros"))
    except Exception:  # not installed through ament, or ament_index not importable
        return None


def resolve_face_model_path(path: str | os.PathLike | None = None) -> Path:
    """Explicit ``path`` > ``$FACE_EXPR_FACE_MODEL`` > :func:`default_search_paths`.

    Raises:
        FaceModelError: naming every place searched and how to build the file.
    """
    if path:
        candidates, origin = [Path(path).expanduser()], "the explicit path"
    elif os.environ.get(ENV_VAR):
        candidates, origin = [Path(os.environ[ENV_VAR]).expanduser()], f"${ENV_VAR}"
    else:
        candidates, origin = default_search_paths(), "the default places"
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    searched = "\n".join(f"  - {c}" for c in candidates)
    raise FaceModelError(
        f"face model {FILE_NAME} not found (searched {origin}):\n{searched}\n"
        "Build it from the ICT-FaceKit distribution (https://github.com/ICT-VGL/ICT-FaceKit, MIT):\n"
        f"  face_expr model build ICT-FaceKit/FaceXModel -o ~/.local/share/face_expr_ros/{FILE_NAME}\n"
        f"or point to an existing file with the face_model_path parameter or ${ENV_VAR}."
    )


_REQUIRED = ("neutral", "triangles", "identity_basis", "expression_basis", "expression_names",
             "landmarks68")


def load_face_model(path: str | os.PathLike | None = None) -> FaceModel:
    """Load and validate the compact ICT face model (see :func:`resolve_face_model_path`).

    Raises:
        FaceModelError: missing file, not an npz, or arrays of wrong shape, dtype or with NaN.
    """
    resolved = resolve_face_model_path(path)
    try:
        with np.load(resolved, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise FaceModelError(f"{resolved}: not a readable .npz face model ({err})") from None
    return face_model_from_arrays(arrays, path=str(resolved))


def face_model_from_arrays(arrays: dict[str, np.ndarray], path: str = "") -> FaceModel:
    """Validate a dict of arrays (the npz's content) and build a :class:`FaceModel`."""
    where = path or "face model"
    arrays = _restore_quantized(arrays, where)
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise FaceModelError(f"{where}: missing arrays {missing} (present: {sorted(arrays)})")
    neutral = _float_array(arrays["neutral"], "neutral", where, ndim=2)
    n_vertices = neutral.shape[0]
    if neutral.shape[1] != 3 or n_vertices < 3:
        raise FaceModelError(f"{where}: neutral has shape {neutral.shape}, expected (V, 3) with V >= 3")
    identity = arrays.get("identity_basis")
    identity = _float_array(identity, "identity_basis", where, ndim=3)
    expression = _float_array(arrays["expression_basis"], "expression_basis", where, ndim=3)
    for name, basis in (("identity_basis", identity), ("expression_basis", expression)):
        if basis.shape[1:] != (n_vertices, 3):
            raise FaceModelError(
                f"{where}: {name} has shape {basis.shape}, expected (N, {n_vertices}, 3)")
    triangles = _index_array(arrays["triangles"], "triangles", where, n_vertices)
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise FaceModelError(f"{where}: triangles has shape {triangles.shape}, expected (T, 3)")
    landmarks = _index_array(arrays["landmarks68"], "landmarks68", where, n_vertices)
    if landmarks.shape != (N_LANDMARKS,):
        raise FaceModelError(f"{where}: landmarks68 has shape {landmarks.shape}, expected (68,)")
    expression_names = _names(arrays["expression_names"], "expression_names", where,
                              expression.shape[0])
    identity_names = (_names(arrays["identity_names"], "identity_names", where, identity.shape[0])
                      if "identity_names" in arrays
                      else tuple(f"identity{i:03d}" for i in range(identity.shape[0])))
    face_count = int(arrays.get("face_area_vertex_count", n_vertices))
    if not 0 < face_count <= n_vertices:
        raise FaceModelError(f"{where}: face_area_vertex_count {face_count} not in 1..{n_vertices}")
    return FaceModel(neutral=neutral, triangles=triangles, identity_basis=identity,
                     expression_basis=expression, identity_names=identity_names,
                     expression_names=expression_names, landmarks68=landmarks,
                     face_area_vertex_count=face_count, path=path)


def _restore_quantized(arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """The compact file's bases (``<name>_int16`` times ``<name>_scale`` per mode, written by
    core.convert.compact_arrays) as float32 ``<name>``; other arrays pass through."""
    out = dict(arrays)
    for name in ("identity_basis", "expression_basis"):
        q, s = arrays.get(f"{name}_int16"), arrays.get(f"{name}_scale")
        if q is None or name in arrays:
            continue
        if s is None or q.dtype != np.int16 or q.ndim != 3 or np.shape(s) != (q.shape[0],):
            raise FaceModelError(f"{where}: {name}_int16 {q.dtype} {q.shape} needs {name}_scale "
                                 f"of shape ({q.shape[0]},), got {np.shape(s)}")
        out[name] = q.astype(np.float32) * np.asarray(s, np.float32)[:, None, None]
    return out


def _float_array(value: np.ndarray, name: str, where: str, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise FaceModelError(f"{where}: {name} has dtype {array.dtype}, expected a float type")
    if array.ndim != ndim:
        raise FaceModelError(f"{where}: {name} has {array.ndim} dimensions {array.shape}, expected {ndim}")
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise FaceModelError(f"{where}: {name} holds {bad} NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def _index_array(value: np.ndarray, name: str, where: str, n_vertices: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise FaceModelError(f"{where}: {name} has dtype {array.dtype}, expected integers")
    if array.size and (array.min() < 0 or array.max() >= n_vertices):
        raise FaceModelError(
            f"{where}: {name} indexes vertices {array.min()}..{array.max()}, the mesh has {n_vertices}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _names(value: np.ndarray, name: str, where: str, count: int) -> tuple[str, ...]:
    array = np.asarray(value)
    if array.dtype.kind != "U" or array.shape != (count,):
        raise FaceModelError(
            f"{where}: {name} is {array.dtype} {array.shape}, expected {count} strings")
    return tuple(str(s) for s in array)
