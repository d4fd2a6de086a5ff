"""Rotations, projections, crop affines and frames.

Core convention (docs/conventions.md): R maps model axes to a camera frame with x = image right,
y = image up, z = towards the viewer; ``R = Rx(pitch) Ry(yaw) Rz(roll)``, active rotations, degrees.
yaw + = the subject turns to their own left (nose towards image right), pitch + = the subject looks
down, roll + = the face turns counter-clockwise as the viewer sees it.

ROS (REP-103/REP-155): the image's optical frame is x right, y down, z into the scene, so
core -> optical is ``diag(1, -1, -1)``. Frame ``face_<id>``: x out of the face, y the subject's left,
z up; frame ``gaze_<id>``: optical axes with z along the gaze.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

CORE_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])
# Columns: the face_<id> axes (x out of the face, y subject's left, z up) in model coordinates.
FACE_AXES_IN_MODEL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
# Columns: the gaze_<id> axes (x subject's right, y down, z out of the face) in model coordinates.
GAZE_AXES_IN_MODEL = np.diag([-1.0, -1.0, 1.0])
CM_TO_M = 0.01


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """Continuous 6D rotation (Zhou et al. 2019) to a rotation matrix by Gram-Schmidt.

    Args:
        x: (..., 6), the first two columns of the matrix, unnormalised.
    Returns:
        (..., 3, 3) rotation matrices; differentiable.
    """
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def matrix_to_rotation_6d(matrix: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, the inverse of :func:`rotation_6d_to_matrix`."""
    return _cat_last(matrix[..., :, 0], matrix[..., :, 1])


def _cat_last(a, b):
    if isinstance(a, torch.Tensor):
        return torch.cat((a, b), dim=-1)
    return np.concatenate((a, b), axis=-1)


def euler_to_matrix(yaw: float | np.ndarray, pitch: float | np.ndarray,
                    roll: float | np.ndarray) -> np.ndarray:
    """``Rx(pitch) Ry(yaw) Rz(roll)`` from degrees; broadcasts to (..., 3, 3)."""
    # scipy's upper-case axes are intrinsic: "XYZ" with (pitch, yaw, roll) is Rx Ry Rz.
    angles = np.stack(np.broadcast_arrays(pitch, yaw, roll), axis=-1).astype(np.float64)
    flat = Rotation.from_euler("XYZ", angles.reshape(-1, 3), degrees=True).as_matrix()
    return flat.reshape(angles.shape[:-1] + (3, 3))


def matrix_to_euler(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) degrees as (yaw, pitch, roll), the inverse of :func:`euler_to_matrix`.

    Yaw is in [-90, 90]; at yaw = ±90 (gimbal lock) roll is set to 0.
    """
    m = np.asarray(matrix, dtype=np.float64)
    # atan2 rather than arcsin(m02): arcsin loses half the digits near yaw = ±90
    yaw = np.arctan2(m[..., 0, 2], np.hypot(m[..., 0, 0], m[..., 0, 1]))
    pitch = np.arctan2(-m[..., 1, 2], m[..., 2, 2])
    roll = np.arctan2(-m[..., 0, 1], m[..., 0, 0])
    locked = np.abs(m[..., 0, 2]) > 1.0 - 1e-9
    if np.any(locked):  # R = Rx(p) Ry(±90) Rz(r) depends on p ± r only: put it all in pitch
        pitch = np.where(locked, np.arctan2(m[..., 2, 1], m[..., 1, 1]), pitch)
        roll = np.where(locked, 0.0, roll)
    return np.degrees(np.stack((yaw, pitch, roll), axis=-1))


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternion in geometry_msgs order (x, y, z, w), w >= 0."""
    m = np.asarray(matrix, dtype=np.float64)
    q = Rotation.from_matrix(m.reshape(-1, 3, 3)).as_quat()  # scalar-last: (x, y, z, w)
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    return q.reshape(m.shape[:-2] + (4,))


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """(..., 4) quaternion (x, y, z, w), normalised here, -> (..., 3, 3)."""
    q = np.asarray(quaternion, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("quaternion of zero length")
    flat = Rotation.from_quat((q / norm).reshape(-1, 4)).as_matrix()
    return flat.reshape(q.shape[:-1] + (3, 3))


def pose_points(points, rotation, translation, scale=1.0):
    """``s R p + t`` for (..., N, 3) points, (..., 3, 3) R, (..., 3) t; numpy or torch."""
    if isinstance(points, torch.Tensor):
        rotated = torch.einsum("...ij,...nj->...ni", rotation, points)  # R p per point
        return _unsqueeze_scale(scale, points) * rotated + translation[..., None, :]
    rotated = np.einsum("...ij,...nj->...ni", rotation, points)
    return np.asarray(scale)[..., None, None] * rotated + np.asarray(translation)[..., None, :]


def _unsqueeze_scale(scale, like: torch.Tensor):
    if isinstance(scale, torch.Tensor):
        return scale[..., None, None]
    return torch.as_tensor(scale, dtype=like.dtype, device=like.device)


def project_orthographic(points_cam, principal_point=None):
    """Scaled-orthographic projection of already posed points (core camera frame) to pixels.

    The posed points ``s R V + t`` are in pixels with y up; the image's y points down, so
    ``u = x + cx``, ``v = -y + cy`` where (cx, cy) is ``principal_point`` (default 0).
    Args:
        points_cam: (..., N, 3).
    Returns:
        (..., N, 2) pixel coordinates.
    """
    x, y = points_cam[..., 0], points_cam[..., 1]
    if isinstance(points_cam, torch.Tensor):
        uv = torch.stack((x, -y), dim=-1)
    else:
        uv = np.stack((x, -y), axis=-1)
    return uv if principal_point is None else uv + principal_point


def project_pinhole(points_optical: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of (..., N, 3) points in an optical frame (z forward) with 3x3 ``K``."""
    p = np.asarray(points_optical, dtype=np.float64)
    z = p[..., 2:3]
    if np.any(z <= 0):
        raise ValueError("points at or behind the camera (z <= 0) cannot be projected")
    uvw = np.einsum("ij,...nj->...ni", np.asarray(K, dtype=np.float64), p / z)
    return uvw[..., :2]


# ---------------------------------------------------------------------------------------------
# Crop affines: 2x3 matrices on pixel coordinates (x right, y down, pixel centres at integers).
# ---------------------------------------------------------------------------------------------
def crop_affine(box: np.ndarray | tuple[float, float, float, float], size: int,
                margin: float = 0.0) -> np.ndarray:
    """2x3 affine taking image pixels to the pixels of a ``size`` x ``size`` crop.

    The crop is the square around the centre of ``box`` (x0, y0, x1, y1; continuous edges) with
    side ``max(w, h) * (1 + margin)``; the square's edges map to the crop's outer pixel edges
    -0.5 and size - 0.5 (pixel centres at integers).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0) or size <= 0:
        raise ValueError(f"crop_affine: need x1 > x0, y1 > y0 and size > 0, got box {box}, size {size}")
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    s = size / side
    # crop = s * (image - centre) + (size - 1) / 2
    return np.array([[s, 0.0, (size - 1) / 2.0 - s * cx], [0.0, s, (size - 1) / 2.0 - s * cy]])


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine."""
    a = np.asarray(affine, dtype=np.float64)
    linear_inv = np.linalg.inv(a[:, :2])
    return np.hstack((linear_inv, -linear_inv @ a[:, 2:3]))


def apply_affine(affine, points):
    """Apply a 2x3 affine (or a batch (..., 2, 3)) to (..., N, 2) points; numpy or torch."""
    if isinstance(points, torch.Tensor):
        a = torch.as_tensor(affine, dtype=points.dtype, device=points.device)
        return torch.einsum("...ij,...nj->...ni", a[..., :2], points) + a[..., None, :, 2]
    a = np.asarray(affine, dtype=np.float64)
    return np.einsum("...ij,...nj->...ni", a[..., :2], points) + a[..., None, :, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine of ``outer(inner(p))``."""
    o = np.vstack((outer, [0.0, 0.0, 1.0]))
    i = np.vstack((inner, [0.0, 0.0, 1.0]))
    return (o @ i)[:2]


# ---------------------------------------------------------------------------------------------
# Core pose -> ROS frames
# ---------------------------------------------------------------------------------------------
def core_to_optical_rotation(rotation: np.ndarray) -> np.ndarray:
    """Rotation of the model in the camera's optical frame: ``diag(1,-1,-1) R``."""
    return CORE_TO_OPTICAL @ np.asarray(rotation, dtype=np.float64)


def face_frame_rotation(rotation: np.ndarray) -> np.ndarray:
    """Orientation of frame ``face_<id>`` (x out of the face, y subject's left, z up) in the
    optical frame, from the core rotation R."""
    return core_to_optical_rotation(rotation) @ FACE_AXES_IN_MODEL


def gaze_frame_rotation(rotation: np.ndarray) -> np.ndarray:
    """Orientation of frame ``gaze_<id>`` (optical axes, z out of the face) in the optical frame."""
    return core_to_optical_rotation(rotation) @ GAZE_AXES_IN_MODEL


def metric_position(u: float, v: float, scale_px_per_cm: float, K: np.ndarray) -> np.ndarray:
    """Metric position (metres, optical frame) of a face point seen at pixel (u, v).

    Under weak perspective a centimetre of face spans ``scale_px_per_cm`` pixels, so the depth is
    ``Z = f * 0.01 m / scale`` with f the mean of fx and fy; X and Y follow by back-projection.
    """
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise ValueError(f"camera matrix K has non-positive focal lengths fx={fx}, fy={fy}")
    if scale_px_per_cm <= 0:
        raise ValueError(f"scale must be positive, got {scale_px_per_cm}")
    z = 0.5 * (fx + fy) * CM_TO_M / scale_px_per_cm
    return np.array([(u - cx) * z / fx, (v - cy) * z / fy, z])


def default_camera_matrix(width: int, height: int, horizontal_fov_deg: float = 60.0) -> np.ndarray:
    """K assumed when no CameraInfo arrived: square pixels, centred, the given horizontal FOV."""
    f = (width / 2.0) / np.tan(np.radians(horizontal_fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
