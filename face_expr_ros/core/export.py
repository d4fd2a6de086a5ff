"""Writing meshes and images atomically: a reader never sees a half-written file.

Each writer writes to a hidden temporary file in the destination folder and then ``os.replace``-s it
onto the final name (atomic on POSIX within one file system, which the same folder guarantees).
"""
from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

import cv2
import numpy as np


class ExportError(OSError):
    """The destination cannot be written (missing or read-only folder, unsupported format)."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def write_obj(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> Path:
    """Write a Wavefront OBJ (``v x y z`` lines, 1-based ``f a b c`` lines).

    Args:
        path: destination file; its folder must exist.
        vertices: (N, 3) positions (units are the caller's; the face model's are cm).
        triangles: (T, 3) 0-based vertex indices.
    Returns:
        The path written.
    Raises:
        ValueError: wrong shapes or indices out of range. ExportError: cannot write.
    """
    verts, tris = check_mesh(vertices, triangles)
    text = io.StringIO()
    text.write(f"# face_expr_ros mesh: {len(verts)} vertices, {len(tris)} triangles\n")
    np.savetxt(text, verts, fmt="v %.6f %.6f %.6f")
    np.savetxt(text, tris + 1, fmt="f %d %d %d")  # OBJ indices start at 1
    return write_bytes_atomic(path, text.getvalue().encode("ascii"))


def write_image(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image; the format follows the suffix (``.png``, ``.jpg``, ...).

    Raises:
        ValueError: not an RGB uint8 image. ExportError: unsupported suffix or cannot write.
    """
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
    suffix = check_image_suffix(path)
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR
    if not ok:
        raise ExportError(f"cannot write {path}: OpenCV failed to encode a {suffix} image")
    return write_bytes_atomic(path, encoded.tobytes())


def check_image_suffix(path: str | os.PathLike) -> str:
    """The lower-case suffix of ``path`` if it is an image format we write; else ExportError."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ExportError(f"cannot write {path}: unknown image format {suffix or '(no suffix)'!r}; "
                          f"use one of {', '.join(IMAGE_SUFFIXES)}")
    return suffix


def check_writable_folder(path: str | os.PathLike) -> Path:
    """The folder ``path`` will be written to, if it exists and is writable; else ExportError.

    Lets a command fail before long work rather than after it.
    """
    folder = Path(path).expanduser().absolute().parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {path}: folder {folder} is not writable")
    return folder


def temporary_path(target: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``target`` for writing it: ``.<name>.<pid>.<random>.tmp<suffix>``
    (the suffix is kept: OpenCV picks a video container by it). Every writer of this project uses
    it, so a leftover is recognisable by ``.tmp`` in a hidden name."""
    final = Path(target)
    return final.with_name(f".{final.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{final.suffix}")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (before renaming it onto its final name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    The file gets the usual permissions (0o666 minus the umask), not a temporary file's 0o600.
    Returns:
        ``path`` as a Path.
    Raises:
        ExportError: the folder is missing or not writable, or ``path`` is a folder.
    """
    target = Path(path).expanduser()
    check_writable_folder(target)
    if target.is_dir():
        raise ExportError(f"cannot write {path}: it is a folder")
    temporary = temporary_path(target)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the name points to it
        os.replace(temporary, target)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {err.strerror or err}") from err
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def write_ply(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> Path:
    """Write a binary little-endian PLY (float32 ``x y z``, ``vertex_indices`` as uchar + int32).

    Same arguments and errors as :func:`write_obj`; smaller and faster to read for large meshes.
    """
    verts, tris = check_mesh(vertices, triangles)
    header = ("ply\nformat binary_little_endian 1.0\ncomment face_expr_ros mesh\n"
              f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(tris)}\nproperty list uchar int vertex_indices\nend_header\n")
    faces = np.zeros(len(tris), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    faces["n"], faces["v"] = 3, tris
    body = verts.astype("<f4").tobytes() + faces.tobytes()
    return write_bytes_atomic(path, header.encode("ascii") + body)


def check_mesh(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float64 vertices and (T, 3) int64 triangles, or ValueError naming what is wrong."""
    verts = np.asarray(vertices, np.float64)
    tris = np.asarray(triangles)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {verts.shape}")
    if tris.ndim != 2 or tris.shape[1] != 3 or tris.dtype.kind not in "iu":
        raise ValueError(f"triangles must be (T, 3) integers, got {tris.dtype} {tris.shape}")
    if tris.size and (tris.min() < 0 or tris.max() >= len(verts)):
        raise ValueError(f"triangles index vertices {tris.min()}..{tris.max()}, there are {len(verts)}")
    return verts, tris.astype(np.int64)
