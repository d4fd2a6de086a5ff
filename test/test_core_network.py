"""The network's shapes, ranges and size, and the projection to the second landmark set."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_expr_ros.core import network as net
from face_expr_ros.core.camera import euler_to_matrix, pose_points, project_orthographic
from face_expr_ros.core.contour import model_landmarks_np
from face_expr_ros.core.projection import LandmarkProjector
from face_expr_ros.core.synthesis import synthesize


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return net.FaceNet(net.NetworkConfig(input_size=64, width=0.25, feature_dim=64, n_identity=10)).eval()


def test_output_shapes_and_ranges(small_net):
    with torch.no_grad():
        out = small_net(torch.rand(3, 3, 64, 64))
    assert out.identity.shape == (3, 10) and out.expression.shape == (3, 53)
    assert out.rotation.shape == (3, 3, 3) and out.translation.shape == (3, 3) and out.scale.shape == (3,)
    assert ((out.expression >= 0) & (out.expression <= 1)).all()
    eye = torch.eye(3).expand(3, 3, 3)
    torch.testing.assert_close(out.rotation @ out.rotation.transpose(1, 2), eye, atol=1e-5, rtol=0)
    assert (out.scale > 0).all() and (out.translation[:, 2] == 0).all()


def test_batch_equals_single(small_net):
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        batch = small_net(x)
        single = small_net(x[2:3])
    for b, s in zip(batch[2:3].astuple(), single.astuple()):
        torch.testing.assert_close(b, s, atol=1e-5, rtol=1e-4)


def test_starts_frontal_neutral_and_centred():
    model = net.FaceNet()
    with torch.no_grad():
        out = model.eval()(torch.rand(2, 3, 128, 128))
    assert out.expression.max() < 0.05  # below the selection threshold
    torch.testing.assert_close(out.rotation, torch.eye(3).expand(2, 3, 3), atol=1e-2, rtol=0)


def test_default_size_is_robot_friendly():
    model = net.FaceNet()
    params, macs = net.count_parameters(model), net.count_macs(model, 128)
    assert params < 5_000_000, "under 20 MB as float32"
    assert macs < 200_000_000


def test_projector_matches_numpy_synthesis_and_contour(face_model):
    projector = LandmarkProjector(face_model, n_identity=20).double()
    rng = np.random.default_rng(0)
    alpha, beta = rng.normal(size=(1, 20)), rng.uniform(0, 0.6, size=(1, 53))
    r = euler_to_matrix(25.0, -8.0, 5.0)[None]
    t, s = np.array([[3.0, -2.0, 0.0]]), np.array([5.5])
    params = net.FaceParams(*(torch.tensor(a) for a in (alpha, beta, r, t, s)))
    got = projector(params, input_size=128)[0].numpy()
    mesh = pose_points(synthesize(face_model, beta[0], None, alpha[0]), r[0], t[0], s[0])
    expected = project_orthographic(model_landmarks_np(face_model, mesh)[:, :3]) + 63.5
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_projector_gradient_reaches_every_output(face_model):
    projector = LandmarkProjector(face_model, n_identity=10)
    model = net.FaceNet(net.NetworkConfig(input_size=64, width=0.25, feature_dim=64, n_identity=10))
    out = model(torch.rand(2, 3, 64, 64))
    projector(out, 64).sum().backward()
    for head in (model.identity_head, model.expression_head, model.camera_head):
        assert head.weight.grad.abs().sum() > 0
