"""Rotations, Euler and quaternion conventions, projections, crop affines and ROS frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_expr_ros.core import camera as cam

RNG = np.random.default_rng(7)


def random_rotations(n: int) -> np.ndarray:
    q = RNG.normal(size=(n, 4))
    return cam.quaternion_to_matrix(q)


def test_euler_matches_the_documented_product():
    yaw, pitch, roll = np.radians([25.0, -10.0, 40.0])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    np.testing.assert_allclose(cam.euler_to_matrix(25.0, -10.0, 40.0), rx @ ry @ rz, atol=1e-12)


def test_euler_round_trip_random():
    angles = np.column_stack([RNG.uniform(-89, 89, 500), RNG.uniform(-179, 179, 500),
                              RNG.uniform(-179, 179, 500)])
    matrices = cam.euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    np.testing.assert_allclose(cam.matrix_to_euler(matrices), angles, atol=1e-8)


def test_matrix_to_euler_round_trip_random_matrices():
    matrices = random_rotations(300)
    yaw, pitch, roll = cam.matrix_to_euler(matrices).T
    np.testing.assert_allclose(cam.euler_to_matrix(yaw, pitch, roll), matrices, atol=1e-9)


def test_gimbal_lock_still_reproduces_the_matrix():
    m = cam.euler_to_matrix(90.0, 20.0, 10.0)
    np.testing.assert_allclose(cam.euler_to_matrix(*cam.matrix_to_euler(m)), m, atol=1e-9)


def test_quaternion_round_trip_and_order():
    matrices = random_rotations(200)
    q = cam.matrix_to_quaternion(matrices)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    assert (q[:, 3] >= 0).all()
    np.testing.assert_allclose(cam.quaternion_to_matrix(q), matrices, atol=1e-9)
    # geometry_msgs order (x, y, z, w): 90 degrees about z is (0, 0, sin 45, cos 45)
    np.testing.assert_allclose(cam.matrix_to_quaternion(cam.euler_to_matrix(0, 0, 90)),
                               [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    with pytest.raises(ValueError, match="zero length"):
        cam.quaternion_to_matrix(np.zeros(4))


def test_rotation_6d_round_trip_and_gradient():
    matrices = torch.tensor(random_rotations(100))
    six = cam.matrix_to_rotation_6d(matrices)
    torch.testing.assert_close(cam.rotation_6d_to_matrix(six), matrices)
    raw = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    r = cam.rotation_6d_to_matrix(raw)
    eye = torch.eye(3, dtype=torch.float64).expand(8, 3, 3)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(8, dtype=torch.float64))
    r.sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0


def test_sign_conventions_of_yaw_pitch_roll():
    nose = np.array([0.0, 0.0, 1.0])  # +z out of the face
    assert (cam.euler_to_matrix(30, 0, 0) @ nose)[0] > 0.4  # yaw+: nose towards image right
    assert (cam.euler_to_matrix(0, 30, 0) @ nose)[1] < -0.4  # pitch+: looks down (y is up)
    up = np.array([0.0, 1.0, 0.0])
    assert (cam.euler_to_matrix(0, 0, 30) @ up)[0] < -0.4  # roll+: counter-clockwise on screen


def test_pose_points_numpy_and_torch_agree():
    pts = RNG.normal(size=(2, 50, 3))
    r = random_rotations(2)
    t = RNG.normal(size=(2, 3))
    s = np.array([2.0, 0.5])
    expected = np.stack([s[i] * pts[i] @ r[i].T + t[i] for i in range(2)])
    np.testing.assert_allclose(cam.pose_points(pts, r, t, s), expected, atol=1e-12)
    got = cam.pose_points(torch.tensor(pts), torch.tensor(r), torch.tensor(t), torch.tensor(s))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def test_orthographic_projection_flips_y():
    uv = cam.project_orthographic(np.array([[10.0, 20.0, 5.0]]), principal_point=np.array([100.0, 100.0]))
    np.testing.assert_allclose(uv, [[110.0, 80.0]])


def test_pinhole_projection_and_back_projection():
    K = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    pts = np.column_stack([RNG.uniform(-1, 1, 20), RNG.uniform(-1, 1, 20), RNG.uniform(0.5, 4, 20)])
    uv = cam.project_pinhole(pts, K)
    np.testing.assert_allclose(uv[:, 0], 500 * pts[:, 0] / pts[:, 2] + 320)
    with pytest.raises(ValueError, match="behind the camera"):
        cam.project_pinhole(np.array([[0.0, 0.0, -1.0]]), K)


def test_metric_position_inverts_weak_perspective():
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    point = np.array([0.2, -0.1, 1.5])  # metres, optical frame
    u, v = cam.project_pinhole(point[None], K)[0]
    scale = 600.0 * 0.01 / point[2]  # pixels spanned by one centimetre at that depth
    np.testing.assert_allclose(cam.metric_position(u, v, scale, K), point, atol=1e-12)
    with pytest.raises(ValueError):
        cam.metric_position(u, v, 0.0, K)


def test_crop_affine_round_trip_and_box_corners():
    box = (40.0, 60.0, 140.0, 180.0)  # 100 x 120: the square side is 120
    a = cam.crop_affine(box, 128)
    inv = cam.invert_affine(a)
    pts = RNG.uniform(0, 300, size=(30, 2))
    np.testing.assert_allclose(cam.apply_affine(inv, cam.apply_affine(a, pts)), pts, atol=1e-9)
    centre = cam.apply_affine(a, np.array([[90.0, 120.0]]))
    np.testing.assert_allclose(centre, [[63.5, 63.5]])
    edges = cam.apply_affine(a, np.array([[90.0, 60.0], [90.0, 180.0], [30.0, 120.0]]))
    np.testing.assert_allclose(edges, [[63.5, -0.5], [63.5, 127.5], [-0.5, 63.5]], atol=1e-9)
    np.testing.assert_allclose(cam.compose_affine(inv, a), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    with pytest.raises(ValueError, match="x1 > x0"):
        cam.crop_affine((10, 10, 5, 20), 128)


def test_apply_affine_torch_matches_numpy():
    a = cam.crop_affine((0, 0, 50, 40), 64)
    pts = RNG.normal(size=(3, 10, 2)) * 20
    np.testing.assert_allclose(cam.apply_affine(a, torch.tensor(pts)).numpy(), cam.apply_affine(a, pts))


def test_face_and_gaze_frames_are_rotations_with_the_documented_axes():
    r = cam.euler_to_matrix(0, 0, 0)  # frontal: the face looks at the camera
    face = cam.face_frame_rotation(r)
    gaze = cam.gaze_frame_rotation(r)
    for m in (face, gaze):
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(m), 1.0)
    # optical frame: x right, y down, z into the scene. Frontal face_<id>: x towards the camera (-z),
    # y = subject's left = image right (+x), z up (-y)
    np.testing.assert_allclose(face[:, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(face[:, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(face[:, 2], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(gaze[:, 2], [0, 0, -1], atol=1e-12)  # gaze towards the camera


def test_face_turning_to_its_left_in_a_render(face_model):
    """Pose the real model with yaw +30, project like a camera, and read the picture back."""
    r = cam.euler_to_matrix(30.0, 0.0, 0.0)
    posed = cam.pose_points(face_model.neutral, r, np.zeros(3), 10.0)
    uv = cam.project_orthographic(posed, principal_point=np.array([256.0, 256.0]))
    lm = uv[face_model.landmarks68]
    eyes_mid = 0.5 * (lm[36] + lm[45])
    assert lm[30, 0] > eyes_mid[0] + 10, "nose tip is right of the eyes in the image"
    yaw, pitch, roll = cam.matrix_to_euler(r)
    assert yaw > 0 and abs(pitch) < 1e-9 and abs(roll) < 1e-9
    x_axis = cam.face_frame_rotation(r)[:, 0]
    assert x_axis[2] < 0, "face frame x points towards the camera"
    assert x_axis[0] > 0, "and to optical +x (image right), where the nose moved"
