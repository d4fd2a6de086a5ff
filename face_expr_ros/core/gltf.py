"""A face as binary glTF 2.0 (.glb) with the expression templates as morph targets.

The file holds one mesh: the base is the person's neutral shape (neutral + identity), each of the E
expression templates is a morph target (its per-vertex displacement), and the mesh's default
morph weights are the face's coefficients, so any glTF viewer (Blender, three.js, Unity, Unreal)
shows the reconstructed expression and an animator can move every template. Units are metres and
axes are glTF's (+y up, +z out of the face: the same as the model's, docs/conventions.md); the
node's rotation is the face's head rotation (core pose), so the head is turned as in the photo
when seen from +z. Written by hand (the format is a JSON chunk and a binary chunk): no library
needed, and ``read_glb`` reads it back for tests.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from .export import check_mesh, write_bytes_atomic

GLB_MAGIC, GLB_VERSION = 0x46546C67, 2  # "glTF"
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942  # "JSON", "BIN\0"
FLOAT, UINT32 = 5126, 5125  # glTF component types
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES = 4


@dataclass
class MorphMesh:
    """What goes into the file.

    Attributes:
        base: (V, 3) base positions, metres.
        triangles: (T, 3) vertex indices.
        targets: (E, V, 3) displacement of each morph target, metres.
        target_names: E names.
        weights: (E,) default morph weights.
        rotation: (3, 3) node rotation (identity = model axes).
        extras: JSON-able metadata stored in the mesh's ``extras``.
    """

    base: np.ndarray
    triangles: np.ndarray
    targets: np.ndarray
    target_names: Sequence[str]
    weights: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    extras: dict = field(default_factory=dict)

    def posed_vertices(self) -> np.ndarray:
        """(V, 3) what a viewer shows: rotation applied to base + sum_i w_i target_i."""
        shape = self.base + np.einsum("e,evc->vc", self.weights, self.targets)
        return shape @ np.asarray(self.rotation).T


def write_glb(path: str | os.PathLike, mesh: MorphMesh, name: str = "face") -> Path:
    """Write ``mesh`` as a .glb (atomically: temporary name, then rename)."""
    base, triangles = check_mesh(mesh.base, mesh.triangles)
    targets = np.asarray(mesh.targets, np.float32)
    weights = np.asarray(mesh.weights, np.float64)
    if targets.ndim != 3 or targets.shape[1:] != base.shape or len(weights) != len(targets):
        raise ValueError(f"targets {targets.shape} / weights {weights.shape} do not fit {base.shape}")
    if len(mesh.target_names) != len(targets):
        raise ValueError(f"{len(mesh.target_names)} target names for {len(targets)} targets")
    builder = _Builder()
    position = builder.add_positions(base.astype(np.float32))
    indices = builder.add(triangles.astype(np.uint32).ravel(), UINT32, "SCALAR", ELEMENT_ARRAY_BUFFER)
    target_accessors = [{"POSITION": builder.add_positions(t)} for t in targets]
    x, y, z, w = Rotation.from_matrix(np.asarray(mesh.rotation, np.float64)).as_quat()
    document = {
        "asset": {"version": "2.0", "generator": "face_expr_ros"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0, "rotation": [float(x), float(y), float(z), float(w)]}],
        "meshes": [{
            "name": name,
            "primitives": [{"attributes": {"POSITION": position}, "indices": indices,
                            "targets": target_accessors, "mode": TRIANGLES}],
            "weights": [float(v) for v in weights],
            "extras": {"targetNames": list(mesh.target_names), **mesh.extras},
        }],
        **builder.document(),
    }
    return write_bytes_atomic(path, _pack(document, builder.blob()))


class _Builder:
    """Accumulates the binary buffer, its buffer views and accessors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, component: int, kind: str, target: int,
            bounds: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        self.views.append({"buffer": 0, "byteOffset": self.size, "byteLength": len(data),
                           "target": target})
        self.parts.append(data + b"\0" * (-len(data) % 4))  # 4-byte alignment
        self.size += len(self.parts[-1])
        count = len(array) if array.ndim > 1 else array.size
        accessor = {"bufferView": len(self.views) - 1, "componentType": component,
                    "count": int(count), "type": kind}
        if bounds:  # required for POSITION accessors
            accessor["min"] = [float(v) for v in array.min(axis=0)]
            accessor["max"] = [float(v) for v in array.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def add_positions(self, positions: np.ndarray) -> int:
        return self.add(np.asarray(positions, "<f4"), FLOAT, "VEC3", ARRAY_BUFFER, bounds=True)

    def blob(self) -> bytes:
        return b"".join(self.parts)

    def document(self) -> dict:
        return {"buffers": [{"byteLength": self.size}], "bufferViews": self.views,
                "accessors": self.accessors}


def _pack(document: dict, blob: bytes) -> bytes:
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)  # the JSON chunk is padded with spaces
    total = 12 + 8 + len(text) + 8 + len(blob)
    return (struct.pack("<III", GLB_MAGIC, GLB_VERSION, total)
            + struct.pack("<II", len(text), CHUNK_JSON) + text
            + struct.pack("<II", len(blob), CHUNK_BIN) + blob)


def read_glb(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The JSON document and the binary chunk of a .glb (checks the header and chunk types)."""
    data = Path(path).read_bytes()
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != GLB_VERSION or total != len(data):
        raise ValueError(f"{path}: not a glTF 2.0 binary (magic {magic:#x}, version {version})")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != CHUNK_JSON:
        raise ValueError(f"{path}: first chunk is not JSON")
    document = json.loads(data[20: 20 + json_len])
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    if bin_type != CHUNK_BIN:
        raise ValueError(f"{path}: second chunk is not BIN")
    start = 28 + json_len
    return document, data[start: start + bin_len]


def read_accessor(document: dict, blob: bytes, index: int) -> np.ndarray:
    """An accessor's data as a numpy array ((count, 3) for VEC3, (count,) for SCALAR)."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = {FLOAT: "<f4", UINT32: "<u4"}[accessor["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3}[accessor["type"]]
    values = np.frombuffer(blob, dtype, accessor["count"] * width, view["byteOffset"])
    return values.reshape(-1, 3) if width == 3 else values
