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
    expected = single.outputs()
    assert list(batch[2:3].outputs()) == list(expected)
    for name, b in batch[2:3].outputs().items():
        torch.testing.assert_close(b, expected[name], atol=1e-5, rtol=1e-4)


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


def test_projector_numpy_twin_gives_the_torch_landmarks(face_model):
    projector = LandmarkProjector(face_model, n_identity=20)
    rng = np.random.default_rng(1)
    angles = [(0.0, 0.0, 0.0), (60.0, -20.0, 10.0), (-75.0, 25.0, -15.0)]  # far cheeks included
    r = np.stack([euler_to_matrix(*a) for a in angles]).astype(np.float32)
    alpha = rng.normal(size=(3, 20)).astype(np.float32)
    beta = rng.uniform(0, 0.8, size=(3, 53)).astype(np.float32)
    t = np.array([[3.0, -2.0, 0.0], [0.0, 0.0, 0.0], [-4.0, 1.0, 0.0]], np.float32)
    s = np.array([5.5, 4.0, 6.0], np.float32)
    params = net.FaceParams(*(torch.from_numpy(a) for a in (alpha, beta, r, t, s)))
    expected = projector(params, input_size=128).numpy()
    got = projector.landmarks_np(alpha, beta, r, t, s, 128)
    assert got.shape == (3, 68, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_projector_gradient_reaches_every_output(face_model):
    projector = LandmarkProjector(face_model, n_identity=10)
    model = net.FaceNet(net.NetworkConfig(input_size=64, width=0.25, feature_dim=64, n_identity=10))
    out = model(torch.rand(2, 3, 64, 64))
    projector(out, 64).sum().backward()
    for head in (model.identity_head, model.expression_head, model.camera_head):
        assert head.weight.grad.abs().sum() > 0


HEADS = net.NetworkConfig(input_size=64, width=0.25, feature_dim=64, n_identity=10,
                          emotion_head=True, presence_head=True)


def test_without_heads_emotion_and_presence_are_none(small_net):
    with torch.no_grad():
        out = small_net(torch.rand(2, 3, 64, 64))
    assert out.emotion_logits is None and out.presence_logit is None
    assert out.emotion is None and out.presence is None
    assert list(out.outputs()) == list(net.PARAM_NAMES[:5])


def test_emotion_and_presence_heads_shapes_and_ranges():
    torch.manual_seed(0)
    model = net.FaceNet(HEADS).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 64, 64))
    assert out.emotion_logits.shape == (3, net.N_EMOTIONS) == (3, 7)
    assert out.presence_logit.shape == (3,)
    torch.testing.assert_close(out.emotion.sum(-1), torch.ones(3))
    assert ((out.emotion >= 0) & (out.emotion <= 1)).all()
    assert ((out.presence >= 0) & (out.presence <= 1)).all()
    # fresh heads: near-uniform emotions, presence near 0.5
    assert (out.emotion - 1 / 7).abs().max() < 0.05 and (out.presence - 0.5).abs().max() < 0.1
    assert list(out.outputs()) == list(net.PARAM_NAMES)
    assert out[1].presence.shape == () and out.detach().emotion_logits.shape == (3, 7)


def test_heads_learn_a_tiny_batch():
    """A few steps on 4 crops: the emotion head picks the labels, the presence head tells the two
    face crops from the two empty ones."""
    from face_expr_ros.training.losses import labelled_cross_entropy, presence_loss

    torch.manual_seed(0)
    model = net.FaceNet(HEADS).train()
    images = torch.rand(4, 3, 64, 64)
    images[2:] *= 0.1  # "no face": dark crops
    labels = torch.tensor([1, 4, -1, -1])
    present = torch.tensor([1.0, 1.0, 0.0, 0.0])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        out = model(images)
        loss = labelled_cross_entropy(out.emotion_logits, labels) + presence_loss(
            out.presence_logit, present)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model(images)  # still in training mode: batch statistics, as trained
    assert out.emotion[:2].argmax(-1).tolist() == [1, 4]
    assert out.presence[:2].min() > 0.8 and out.presence[2:].max() < 0.2


def test_depthwise_pooling_starts_as_the_mean_and_learns_positions():
    torch.manual_seed(0)
    mean_net = net.FaceNet(net.NetworkConfig(input_size=96, width=0.25, feature_dim=32)).eval()
    config = net.NetworkConfig(input_size=96, width=0.25, feature_dim=32, pooling="depthwise")
    deep = net.FaceNet(config).eval()
    assert deep.backbone.pool.weight.shape == (32, 1, 3, 3)  # 96 px -> a 3x3 map
    missing, unexpected = deep.load_state_dict(mean_net.state_dict(), strict=False)
    assert missing == ["backbone.pool.weight"] and not unexpected
    images = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        for a, b in zip(mean_net(images).astuple(), deep(images).astuple()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    deep.train()
    deep(images).expression.sum().backward()
    grad = deep.backbone.pool.weight.grad
    assert grad is not None and bool((grad != grad[:, :, :1, :1]).any())  # position-specific
    with pytest.raises(ValueError, match="input_size"):
        deep(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match="pooling"):
        net.FaceNet(net.NetworkConfig(pooling="max"))
    assert net.feature_map_side(128) == 4 and net.feature_map_side(160) == 5
    assert net.feature_map_side(100) == 4


def test_added_blocks_and_perceptron_start_as_the_identity_then_learn():
    """A grown network (extra_blocks, head_hidden) loaded with a smaller one's weights gives its
    outputs exactly; the added parts get gradients and change the outputs once trained."""
    torch.manual_seed(0)
    small = net.FaceNet(net.NetworkConfig(input_size=64, width=0.25, feature_dim=32)).eval()
    config = net.NetworkConfig(input_size=64, width=0.25, feature_dim=32, extra_blocks=3,
                               head_hidden=16)
    grown = net.FaceNet(config).eval()
    missing, unexpected = grown.load_state_dict(small.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("backbone.extra.", "neck."))
                                              for k in missing)
    assert len(grown.backbone.extra) == 3 and net.count_macs(grown, 64) > net.count_macs(small, 64)
    # blocks in turn after the 96- and the 160-channel stages (stage ends in features' order)
    first, second, third = grown.backbone.extra_after
    assert first == third and first < second
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(small(images).astuple(), grown(images).astuple()):
            if a is not None:
                torch.testing.assert_close(a, b, atol=0, rtol=0)
    grown.train()
    grown(images).expression.sum().backward()
    assert grown.neck.outer.weight.grad.abs().sum() > 0
    assert all(block.block[-1][1].weight.grad.abs().sum() > 0 for block in grown.backbone.extra)
    with torch.no_grad():
        grown.neck.outer.weight.normal_(std=0.1)
        grown.backbone.extra[0].block[-1][1].weight.fill_(0.5)
    grown.eval()
    with torch.no_grad():
        assert (grown(images).identity - small(images).identity).abs().max() > 1e-4
    with pytest.raises(ValueError, match="extra_blocks"):
        net.FaceNet(net.NetworkConfig(width=0.25, extra_blocks=-1))
    with pytest.raises(ValueError, match="head_hidden"):
        net.FaceNet(net.NetworkConfig(width=0.25, head_hidden=-1))


def test_resample_pooling_keeps_the_mean_and_each_channels_sum():
    from face_expr_ros.core.network import resample_pooling

    mean4 = torch.full((3, 1, 4, 4), 1 / 16)
    torch.testing.assert_close(resample_pooling(mean4, 5), torch.full((3, 1, 5, 5), 1 / 25))
    ramp = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(2, 1, 1, 1) * torch.tensor([1.0, -1.0]
                                                                                    ).view(2, 1, 1, 1)
    out = resample_pooling(ramp, 5)
    torch.testing.assert_close(out.sum((2, 3)), ramp.sum((2, 3)))
    assert out[0, 0, 0, 0] == 0 and out[0, 0, -1, -1] > out[0, 0, 0, -1] > 0  # corners stay put
    zero_sum = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).view(1, 1, 2, 2)
    assert torch.isfinite(resample_pooling(zero_sum, 3)).all()
    torch.testing.assert_close(resample_pooling(ramp, 4), ramp)
    with pytest.raises(ValueError, match="depthwise pooling kernel"):
        resample_pooling(torch.zeros(3, 2, 4, 4), 5)
