"""Conversions between ROS messages and plain arrays: images, faces, poses, meshes.

Pure functions: they build or read rclpy message objects but need no node, no context and no
cv_bridge (decoding is numpy/OpenCV). Errors say which message field was wrong and what was
expected.

Frames (docs/conventions.md): poses and meshes are in the image's optical frame (x right, y down,
z into the scene), metres; quaternions are geometry_msgs (x, y, z, w) with w >= 0.
"""
from __future__ import annotations

import array
import math
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
from face_expr_msgs.msg import FaceExpression, FaceExpressionArray
from geometry_msgs.msg import Point, Pose, TransformStamped
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker

from face_expr_ros.core.camera import matrix_to_quaternion
# Decoding is ROS-free (core.image_msgs: bags are decoded by the same code); re-exported here, the
# node's one module for message conversions.
from face_expr_ros.core.image_msgs import (DEFAULT_MAX_PIXELS, SUPPORTED_ENCODINGS,  # noqa: F401
                                           ImageConversionError, compressed_to_rgb,  # noqa: F401
                                           decode_compressed, image_to_rgb)  # noqa: F401

_ENCODERS = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR}


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """RGB array -> sensor_msgs/Image (no padding: ``step = 3 * width``).

    Args:
        rgb: (H, W, 3) uint8.
        header: stamp and frame_id (those of the source image for a debug image).
        encoding: "rgb8" or "bgr8".
    """
    if encoding not in _ENCODERS:
        raise ValueError(f"encoding must be one of {', '.join(_ENCODERS)}, got {encoding!r}")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    pixels = rgb if _ENCODERS[encoding] is None else cv2.cvtColor(rgb, _ENCODERS[encoding])
    msg = Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                is_bigendian=0, step=3 * rgb.shape[1])
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(pixels).tobytes())
    msg.data = data
    return msg


# ---------------------------------------------------------------------------------------------
# Faces
# ---------------------------------------------------------------------------------------------
def box_to_roi(box: Sequence[float], image_size: tuple[int, int]) -> RegionOfInterest:
    """Face box (x0, y0, x1, y1; continuous pixel edges) -> RegionOfInterest of whole pixels.

    The box is widened to whole pixels (floor of x0, y0; ceil of x1, y1) and clipped to the image.

    Args:
        image_size: (width, height) of the image.
    Raises:
        ValueError: a non-finite box, or one with no pixel inside the image.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = int(image_size[0]), int(image_size[1])
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"face box is not finite: {box}")
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} has no pixel inside the {width}x{height} image")
    return RegionOfInterest(x_offset=left, y_offset=top, width=right - left, height=bottom - top,
                            do_rectify=False)


def rotation_to_quaternion(rotation: np.ndarray, atol: float = 1e-4) -> np.ndarray:
    """(3, 3) proper rotation -> (4,) quaternion (x, y, z, w), w >= 0.

    Raises:
        ValueError: not (3, 3), not orthonormal within ``atol``, or a reflection.
    """
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise ValueError(f"rotation must be a finite (3, 3) matrix, got shape {r.shape}")
    if not np.allclose(r @ r.T, np.eye(3), atol=atol) or np.linalg.det(r) < 0:
        raise ValueError(f"rotation is not a proper rotation matrix (R R^T = I, det = +1): {r}")
    return matrix_to_quaternion(r)


def make_pose(position: np.ndarray, rotation: np.ndarray) -> Pose:
    """(3,) position (metres) and (3, 3) rotation -> geometry_msgs/Pose."""
    p = _finite_vector(position, 3, "position")
    qx, qy, qz, qw = rotation_to_quaternion(rotation).tolist()
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = p.tolist()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    return pose


def face_to_msg(header: Header, face_id: str, confidence: float, box: Sequence[float],
                image_size: tuple[int, int], names: Sequence[str], coefficients: np.ndarray,
                selected: Sequence[int], identity: np.ndarray, position: np.ndarray,
                face_rotation: np.ndarray, landmarks: np.ndarray) -> FaceExpression:
    """Build one face_expr_msgs/FaceExpression.

    Args:
        header: the source image's header (stamp, optical frame_id).
        face_id: the tracker's id (suffix of the TF frame ``face_<id>``).
        confidence: detection score, clipped to [0, 1].
        box: (4,) x0, y0, x1, y1 in image pixels -> ``roi`` (see :func:`box_to_roi`).
        image_size: (width, height) of the source image, for clipping the roi.
        names: (E,) expression template names.
        coefficients: (E,) coefficients, clipped to [0, 1].
        selected: indices into ``names`` of the templates used for synthesis.
        identity: (K,) identity coefficients.
        position: (3,) origin of ``face_<id>`` in the optical frame, metres.
        face_rotation: (3, 3) orientation of ``face_<id>`` in the optical frame
            (``camera.face_frame_rotation(R)``).
        landmarks: (68, 2) pixels -> 136 values x0, y0, x1, y1, ...
    Raises:
        ValueError: mismatched lengths, indices out of range, non-finite values, a bad rotation.
    """
    names = [str(n) for n in names]
    coeffs = _finite_vector(coefficients, len(names), "coefficients (one per name)")
    chosen = np.asarray(selected, dtype=np.int64).reshape(-1)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= len(names)):
        raise ValueError(f"selected indices must be in [0, {len(names)}), got {chosen.tolist()}")
    lmk = np.asarray(landmarks, dtype=np.float64)
    if lmk.ndim != 2 or lmk.shape[1] != 2 or not np.all(np.isfinite(lmk)):
        raise ValueError(f"landmarks must be finite (N, 2) pixels, got shape {lmk.shape}")
    identity = _finite_vector(identity, None, "identity")
    if not math.isfinite(float(confidence)):
        raise ValueError(f"confidence is not finite: {confidence}")

    msg = FaceExpression(header=header, id=str(face_id))
    msg.confidence = float(min(1.0, max(0.0, float(confidence))))
    msg.roi = box_to_roi(box, image_size)
    msg.names = names
    msg.coefficients = _float32_array(np.clip(coeffs, 0.0, 1.0))
    msg.selected = array.array("H", chosen.tolist())
    msg.identity = _float32_array(identity)
    msg.head_pose = make_pose(position, face_rotation)
    msg.landmarks = _float32_array(lmk.reshape(-1))  # row-major: x0, y0, x1, y1, ...
    return msg


class FaceMessages(NamedTuple):
    """What one image's faces become: messages, /tf transforms, and each face's optical pose."""

    messages: list
    transforms: list
    poses: list


def faces_to_messages(header: Header, faces: Sequence, camera_matrix: np.ndarray,
                      image_size: tuple[int, int]) -> FaceMessages:
    """FaceExpression, face_<id>/gaze_<id> transforms and optical pose of every core Face of an
    image of ``image_size`` (width, height); each pose is converted once (message and transform).
    The ids are the tracker's (core.tracking.ID_PREFIX: valid REP-155 ids)."""
    messages, transforms, poses = [], [], []
    for face in faces:
        pose = face.optical_pose(camera_matrix)
        message = face_to_msg(header, face.id, face.score, face.box, image_size, face.names,
                              face.coefficients, face.selected, face.identity, pose.position,
                              pose.face_rotation, face.landmarks)
        transforms += pose_to_transforms(header, face.id, pose.position, pose.face_rotation,
                                         pose.gaze_rotation, face_pose=message.head_pose)
        messages.append(message)
        poses.append(pose)
    return FaceMessages(messages, transforms, poses)


def faces_to_array_msg(header: Header, faces: Sequence[FaceExpression]) -> FaceExpressionArray:
    """FaceExpressionArray of ``faces`` sorted by roi area, largest first (stable among ties)."""
    ordered = sorted(faces, key=lambda f: -int(f.roi.width) * int(f.roi.height))
    return FaceExpressionArray(header=header, faces=ordered)


def pose_to_transforms(header: Header, face_id: str, position: np.ndarray,
                       face_rotation: np.ndarray, gaze_rotation: np.ndarray, *,
                       face_pose: Pose | None = None) -> list[TransformStamped]:
    """The TF transforms of one face: ``face_<id>`` and ``gaze_<id>`` in the image's frame.

    Args:
        header: the source image's header: parent frame = ``header.frame_id``, stamp kept.
        position: (3,) common origin (sellion), metres in the optical frame.
        face_rotation: (3, 3) ``camera.face_frame_rotation(R)``.
        gaze_rotation: (3, 3) ``camera.gaze_frame_rotation(R)``.
        face_pose: ``make_pose(position, face_rotation)`` if already built (the ``head_pose`` of
            :func:`face_to_msg`): copied instead of converted and checked again.
    Returns:
        [face transform, gaze transform].
    """
    if face_pose is None:
        face_pose = make_pose(position, face_rotation)
    return [_transform(header, f"face_{face_id}", face_pose),
            _transform(header, f"gaze_{face_id}", make_pose(position, gaze_rotation))]


def _transform(header: Header, child_frame_id: str, pose: Pose) -> TransformStamped:
    """``pose`` as the transform from ``header.frame_id`` to ``child_frame_id`` (values copied)."""
    t = TransformStamped()
    t.header.stamp = header.stamp
    t.header.frame_id = header.frame_id
    t.child_frame_id = child_frame_id
    t.transform.translation.x = pose.position.x
    t.transform.translation.y = pose.position.y
    t.transform.translation.z = pose.position.z
    q, o = t.transform.rotation, pose.orientation
    q.x, q.y, q.z, q.w = o.x, o.y, o.z, o.w
    return t


# ---------------------------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------------------------
def mesh_to_marker(header: Header, face_id: str, vertices: np.ndarray, triangles: np.ndarray,
                   color: Sequence[float] = (0.8, 0.7, 0.6, 0.8), marker_id: int = 0,
                   namespace: str = "face_mesh", lifetime: float = 0.0) -> Marker:
    """A mesh as an RViz TRIANGLE_LIST marker (3 points per triangle, one colour).

    Args:
        header: the source image's header (vertices are in its optical frame).
        face_id: the face's id, stored in ``marker.text`` for readers (RViz ignores it here).
        vertices: (V, 3) metres in the optical frame.
        triangles: (T, 3) vertex indices, counter-clockwise seen from outside.
        color: r, g, b, a in [0, 1].
        marker_id: marker id within ``namespace`` (a DELETE needs the same pair).
        lifetime: seconds before RViz removes it on its own; 0 = until replaced or deleted.
    Returns:
        Marker with 3T points. Building 3T Point objects costs about 5 us each: decimate large
        meshes first (:func:`decimate_mesh`).
    """
    v = np.asarray(vertices, dtype=np.float64)
    tri = _check_mesh(v, triangles)
    rgba = [float(c) for c in color]
    if len(rgba) != 4 or not all(0.0 <= c <= 1.0 for c in rgba):
        raise ValueError(f"color must be r, g, b, a in [0, 1], got {color}")
    if not (math.isfinite(lifetime) and lifetime >= 0):
        raise ValueError(f"lifetime must be >= 0 seconds, got {lifetime}")
    marker = Marker(header=header, ns=namespace, id=int(marker_id), type=Marker.TRIANGLE_LIST,
                    action=Marker.ADD, text=str(face_id))
    marker.pose.orientation.w = 1.0
    marker.scale.x = marker.scale.y = marker.scale.z = 1.0
    marker.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
    marker.lifetime.sec, marker.lifetime.nanosec = _sec_nanosec(lifetime)
    corners = v[tri].reshape(-1, 3)  # (3T, 3): the corners of each triangle in order
    marker.points = [Point(x=x, y=y, z=z) for x, y, z in corners.tolist()]
    return marker


def delete_marker(header: Header, marker_id: int, namespace: str = "face_mesh") -> Marker:
    """A DELETE marker for (namespace, marker_id) (for a face the tracker dropped)."""
    return Marker(header=header, ns=namespace, id=int(marker_id), action=Marker.DELETE)


class DecimatedMesh(NamedTuple):
    """Result of :func:`decimate_mesh`.

    Attributes:
        vertices: (V', 3) the kept vertices (a subset of the input vertices).
        triangles: (T', 3) indices into ``vertices``.
        vertex_index: (V',) index of each kept vertex in the input, so that any posed copy
            ``P`` of the same mesh decimates as ``P[vertex_index]`` with the same ``triangles``.
        cell_size: the grid cell edge used, in the vertices' unit (0 when nothing was done).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    vertex_index: np.ndarray
    cell_size: float


def cluster_mesh(vertices: np.ndarray, triangles: np.ndarray, cell_size: float) -> DecimatedMesh:
    """Vertex clustering (Rossignac and Borrel 1993) on a cubic grid of edge ``cell_size``.

    All vertices in a grid cell merge into one: the cell's input vertex nearest to their mean, so
    kept vertices lie on the original surface and every vertex moves by less than the cell
    diagonal. Triangles are re-indexed; those with two corners in one cell (degenerate) and
    duplicates are dropped. The surface stays connected where it was, and holes do not open
    (each triangle either survives or collapses onto its neighbours), but the result may be
    non-manifold where thin parts collapse.

    Args:
        vertices: (V, 3).
        triangles: (T, 3) indices.
        cell_size: grid edge (> 0), in the vertices' unit.
    """
    v = np.asarray(vertices, dtype=np.float64)
    tri = _check_mesh(v, triangles)
    if not (math.isfinite(cell_size) and cell_size > 0):
        raise ValueError(f"cell_size must be > 0, got {cell_size}")
    cells = np.floor((v - v.min(axis=0)) / cell_size).astype(np.int64)
    dims = cells.max(axis=0) + 1
    if float(np.prod(dims.astype(np.float64))) < 2.0 ** 62:  # one integer key per cell
        key = cells[:, 0] + dims[0] * (cells[:, 1] + dims[1] * cells[:, 2])
        _, cluster = np.unique(key, return_inverse=True)
    else:  # a grid too fine for int64 keys
        _, cluster = np.unique(cells, axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    n = int(cluster.max()) + 1
    counts = np.bincount(cluster, minlength=n)
    means = np.stack([np.bincount(cluster, weights=v[:, k], minlength=n) for k in range(3)], 1)
    means /= counts[:, None]
    # representative: the vertex of each cluster nearest to the cluster mean
    dist = np.linalg.norm(v - means[cluster], axis=1)
    order = np.lexsort((dist, cluster))  # by cluster, then by distance
    first = np.ones(len(order), dtype=bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    representative = order[first]  # (n,) vertex index per cluster, in cluster order

    new_tri = cluster[tri]
    keep = ((new_tri[:, 0] != new_tri[:, 1]) & (new_tri[:, 1] != new_tri[:, 2])
            & (new_tri[:, 0] != new_tri[:, 2]))
    new_tri = _unique_triangles(new_tri[keep])
    used, compact = np.unique(new_tri, return_inverse=True)
    vertex_index = representative[used]
    return DecimatedMesh(v[vertex_index], compact.reshape(-1, 3).astype(np.int64), vertex_index,
                         float(cell_size))


def decimate_mesh(vertices: np.ndarray, triangles: np.ndarray,
                  target_triangles: int) -> DecimatedMesh:
    """Reduce a mesh to about ``target_triangles`` by vertex clustering (:func:`cluster_mesh`).

    The cell size is found by bisection (in log scale, 30 steps) so that the triangle count is
    the closest reached to ``target_triangles`` without exceeding it by more than 10 %. Run it once
    on the neutral mesh and apply ``vertex_index`` to every posed mesh: the topology is fixed.

    Args:
        vertices: (V, 3).
        triangles: (T, 3).
        target_triangles: wanted count (>= 1); at or above T the mesh is returned unchanged.
    """
    v = np.asarray(vertices, dtype=np.float64)
    tri = _check_mesh(v, triangles)
    if int(target_triangles) < 1:
        raise ValueError(f"target_triangles must be >= 1, got {target_triangles}")
    if target_triangles >= len(tri):
        return DecimatedMesh(v.copy(), tri.copy(), np.arange(len(v)), 0.0)
    extent = float(np.linalg.norm(v.max(axis=0) - v.min(axis=0)))
    if extent == 0:
        raise ValueError("all vertices coincide: nothing to decimate")
    lo, hi = math.log(extent * 1e-5), math.log(extent)
    best = None
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        mesh = cluster_mesh(v, tri, math.exp(mid))
        count = len(mesh.triangles)
        if count > 1.1 * target_triangles:
            lo = mid  # too many triangles: bigger cells
        else:
            hi = mid
            error = abs(count - target_triangles)
            if best is None or error < abs(len(best.triangles) - target_triangles):
                best = mesh
    if best is None:
        best = cluster_mesh(v, tri, math.exp(hi))
    return best


def _unique_triangles(tri: np.ndarray) -> np.ndarray:
    """Drop repeated triangles; (a, b, c), (b, c, a), (c, a, b) are one (orientation kept)."""
    if len(tri) == 0:
        return tri.reshape(0, 3)
    shift = np.argmin(tri, axis=1)
    rows = np.arange(len(tri))[:, None]
    rolled = tri[rows, (shift[:, None] + np.arange(3)[None, :]) % 3]
    n = int(tri.max()) + 1
    key = (rolled[:, 0] * n + rolled[:, 1]) * n + rolled[:, 2] if n < 2 ** 20 else rolled
    _, first = np.unique(key, axis=0 if key.ndim == 2 else None, return_index=True)
    return tri[np.sort(first)]


def _check_mesh(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.all(np.isfinite(vertices)):
        raise ValueError(f"vertices must be finite (V, 3), got shape {vertices.shape}")
    tri = np.asarray(triangles)
    if tri.ndim != 2 or tri.shape[1] != 3 or not np.issubdtype(tri.dtype, np.integer):
        raise ValueError(f"triangles must be (T, 3) integers, got {tri.shape} {tri.dtype}")
    if tri.size and (tri.min() < 0 or tri.max() >= len(vertices)):
        raise ValueError(f"triangle indices must be in [0, {len(vertices)}), "
                         f"got [{tri.min()}, {tri.max()}]")
    return tri.astype(np.int64)


def _finite_vector(values: np.ndarray, length: int | None, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if length is not None and x.size != length:
        raise ValueError(f"{name}: expected {length} values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values")
    return x


def _float32_array(values: np.ndarray) -> array.array:
    out = array.array("f")
    out.frombytes(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return out


def _sec_nanosec(seconds: float) -> tuple[int, int]:
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return sec, nanosec
