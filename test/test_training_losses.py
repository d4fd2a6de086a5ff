"""Losses on constructed cases: zero at the target, gradient signs, the consistency formula."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_expr_ros.training import losses as L

RNG = torch.Generator().manual_seed(0)


def landmarks(batch: int = 3) -> torch.Tensor:
    return torch.rand(batch, 68, 2, generator=RNG, dtype=torch.float64) * 80 + 20


def rotation_affine(batch: int, degrees: float = 20.0, shift=(5.0, -3.0)) -> torch.Tensor:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a = torch.tensor([[c, -s, shift[0]], [s, c, shift[1]]], dtype=torch.float64)
    return a.expand(batch, 2, 3).clone()


def test_mse_zero_at_target_and_normalised_by_face_size():
    l1 = landmarks()
    assert L.landmark_mse(l1.clone(), l1) == 0
    shifted = l1 + torch.tensor([3.0, 4.0], dtype=torch.float64)  # every point 5 px off
    expected = (25.0 / L.face_size(l1) ** 2).mean()
    torch.testing.assert_close(L.landmark_mse(shifted, l1), expected)
    # scale invariance: the same error relative to the face, on a face twice as large
    torch.testing.assert_close(L.landmark_mse(2 * shifted, 2 * l1), L.landmark_mse(shifted, l1))


def test_mse_gradient_points_towards_the_target():
    l1 = landmarks(1)
    l2 = (l1 + 2.0).requires_grad_(True)
    L.landmark_mse(l2, l1).backward()
    assert (l2.grad > 0).all(), "moving each point down (towards the target) lowers the loss"


def test_feature_point_weights_keep_the_loss_size_and_weigh_the_features():
    assert L.point_weights(1.0) is None, "1.0 is the unweighted loss"
    w = L.point_weights(3.0, torch.device("cpu"))
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    assert torch.allclose(w[17:] / w[:17].mean(), torch.tensor(3.0))
    with pytest.raises(ValueError, match="feature_points"):
        L.point_weights(0.0)
    l1 = landmarks()
    w64 = w.double()
    assert L.landmark_mse(l1.clone(), l1, weights=w64) == 0
    uniform = l1 + 2.0  # every point equally off: the weights (mean 1) do not change the loss
    torch.testing.assert_close(L.landmark_mse(uniform, l1, weights=w64), L.landmark_mse(uniform, l1))
    jaw_off, features_off = l1.clone(), l1.clone()
    jaw_off[:, :17] += 4.0
    features_off[:, 17:] += 4.0 * np.sqrt(17 / 51)  # the same unweighted loss
    torch.testing.assert_close(L.landmark_mse(jaw_off, l1), L.landmark_mse(features_off, l1))
    assert L.landmark_mse(features_off, l1, weights=w64) > 2.5 * L.landmark_mse(jaw_off, l1, weights=w64)
    l2 = (l1 + 2.0).requires_grad_(True)
    L.landmark_mse(l2, l1, weights=w64).backward()
    assert (l2.grad > 0).all(), "weighted, still towards the target"
    assert (l2.grad[:, 17:].abs().mean() / l2.grad[:, :17].abs().mean()).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="weights"):
        L.landmark_mse(l2, l1, weights=w64[:60])


def test_mouth_point_weight_multiplies_the_feature_weight_on_the_20_mouth_points():
    w = L.point_weights(3.0, torch.device("cpu"), 2.0)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    assert torch.allclose(w[48:] / w[17:48].mean(), torch.tensor(2.0)), "mouth over other features"
    assert torch.allclose(w[17:48] / w[:17].mean(), torch.tensor(3.0)), "features over the jaw"
    only_mouth = L.point_weights(1.0, torch.device("cpu"), 4.0)
    assert only_mouth is not None and torch.allclose(only_mouth[48:] / only_mouth[:48].mean(),
                                                     torch.tensor(4.0))
    assert L.point_weights(1.0, None, 1.0) is None
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="mouth_points"):
            L.point_weights(3.0, None, bad)
    l1 = landmarks(2)
    l2 = l1.clone()
    l2[:, 48:] += 3.0  # only the mouth off
    zeros = torch.zeros(2, 40, dtype=torch.float64), torch.zeros(2, 53, dtype=torch.float64)
    base = L.total_loss(l1, l2, None, None, None, None, *zeros, L.LossWeights(feature_points=3.0))
    mouth = L.total_loss(l1, l2, None, None, None, None, *zeros,
                         L.LossWeights(feature_points=3.0, mouth_points=2.0))
    ratio = (6.0 / ((17 + 31 * 3.0 + 20 * 6.0) / 68)) / (3.0 / ((17 + 51 * 3.0) / 68))
    torch.testing.assert_close(mouth.mse, base.mse * ratio)


def test_total_loss_applies_the_feature_point_weight_to_mse_and_consistency():
    l1 = landmarks(2)
    l2 = l1.clone()
    l2[:, 17:] += 3.0  # only the features off
    affine = rotation_affine(2)
    perm = torch.arange(68).expand(2, 68)
    from face_expr_ros.core.camera import apply_affine
    l3 = apply_affine(affine, l1)
    l2_aug = apply_affine(affine, l2)
    zeros = torch.zeros(2, 40, dtype=torch.float64), torch.zeros(2, 53, dtype=torch.float64)
    plain = L.total_loss(l1, l2, l3, l2_aug, affine, perm, *zeros, L.LossWeights())
    weighted = L.total_loss(l1, l2, l3, l2_aug, affine, perm, *zeros,
                            L.LossWeights(feature_points=3.0))
    ratio = 3.0 / ((17 + 51 * 3.0) / 68)  # the features' weight after scaling to mean 1
    torch.testing.assert_close(weighted.mse, plain.mse * ratio)
    torch.testing.assert_close(weighted.consistency, plain.consistency * ratio)


def test_consistency_zero_when_the_three_sets_agree():
    l1 = landmarks()
    affine = rotation_affine(3)
    identity = torch.arange(68).expand(3, 68)
    l3 = L.permute_points(torch.einsum("bij,bnj->bni", affine[..., :2], l1) + affine[:, None, :, 2],
                          identity)
    assert L.consistency_loss(l3.clone(), l3, l1.clone(), affine, identity) < 1e-20


def test_consistency_handles_the_flip_permutation():
    l1 = landmarks(1)
    flip = torch.tensor([[[-1.0, 0.0, 127.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    perm = torch.randperm(68, generator=RNG)[None]
    l3 = L.permute_points(torch.einsum("bij,bnj->bni", flip[..., :2], l1) + flip[:, None, :, 2], perm)
    assert L.consistency_loss(l3.clone(), l3, l1, flip, perm) < 1e-20
    wrong = torch.arange(68)[None]
    assert L.consistency_loss(l3.clone(), l3, l1, flip, wrong) > 1e-3


def test_consistency_gradient_flows_into_both_predictions():
    l1 = landmarks(2)
    affine = rotation_affine(2)
    identity = torch.arange(68).expand(2, 68)
    l3 = torch.einsum("bij,bnj->bni", affine[..., :2], l1) + affine[:, None, :, 2]
    l2 = (l1 + 1.0).requires_grad_(True)
    l2_aug = (l3 - 1.0).requires_grad_(True)
    L.consistency_loss(l2_aug, l3, l2, affine, identity).backward()
    assert l2.grad.abs().sum() > 0 and l2_aug.grad.abs().sum() > 0
    # L2' is below-left of both of its targets: the gradient pushes it up-right (negative grad)
    assert (l2_aug.grad < 0).all()


def test_priors_and_total():
    alpha = torch.zeros(2, 40, requires_grad=True)
    beta = torch.full((2, 53), 0.2, requires_grad=True)
    l1 = landmarks(2)
    terms = L.total_loss(l1, l1 + 1, None, None, None, None, alpha, beta,
                         L.LossWeights(consistency=1.0, identity_prior=0.5, expression_sparsity=0.1))
    assert terms.consistency == 0 and terms.identity_prior == 0
    torch.testing.assert_close(terms.expression_sparsity, torch.tensor(0.2))
    torch.testing.assert_close(terms.total, terms.mse + 0.1 * terms.expression_sparsity)
    terms.total.backward()
    assert (beta.grad > 0).all(), "sparsity pulls coefficients down"
    a = torch.ones(1, 4, requires_grad=True)
    L.identity_prior(a).backward()
    assert (a.grad > 0).all()
    assert set(terms.as_floats()) == {"total", "mse", "consistency", "identity_prior",
                                      "expression_sparsity", "blendshapes"}


def test_blendshape_distillation():
    pred = torch.tensor([[0.2, 0.9, 0.0], [0.5, 0.5, 0.5]], requires_grad=True)
    target = torch.tensor([[0.0, 1.0, 0.7], [0.1, 0.1, 0.1]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # 2nd face: no teacher scores
    loss = L.blendshape_distillation(pred, target, mask)
    torch.testing.assert_close(loss, torch.tensor((0.2 ** 2 + 0.1 ** 2) / 2))
    loss.backward()
    assert pred.grad[0, 0] > 0 and pred.grad[0, 1] < 0  # towards the teacher
    assert (pred.grad[0, 2] == 0) and (pred.grad[1] == 0).all()  # masked: no pull
    assert L.blendshape_distillation(pred, target, torch.zeros_like(mask)) == 0
    with pytest.raises(ValueError, match="must be equal"):
        L.blendshape_distillation(pred, target[:, :2], mask)
    l1 = landmarks(2)
    weights = L.LossWeights(consistency=0.0, identity_prior=0.0, expression_sparsity=0.0, blendshapes=2.0)
    terms = L.total_loss(l1, l1 + 1, None, None, None, None, torch.zeros(2, 4), torch.zeros(2, 3),
                         weights, (pred, target, mask))
    torch.testing.assert_close(terms.total, terms.mse + 2.0 * terms.blendshapes)


def test_standardised_distillation_divides_each_shape_by_its_scale():
    target = torch.full((2, 52), 0.2, dtype=torch.float64)
    mask = torch.ones_like(target)
    scale = torch.full((52,), 0.5, dtype=torch.float64)
    assert L.blendshape_distillation(target.clone(), target, mask, scale) == 0
    off = target + 0.1
    torch.testing.assert_close(L.blendshape_distillation(off, target, mask, scale),
                               torch.tensor(0.04, dtype=torch.float64))  # (0.1 / 0.5)^2
    # a shape with a small spread weighs more than one with a large spread, for the same error
    scale = torch.ones(52, dtype=torch.float64)
    scale[0] = 0.1
    single = torch.zeros_like(mask)
    single[:, 0] = 1
    first = L.blendshape_distillation(off, target, single, scale)
    single = single.roll(1, dims=1)
    second = L.blendshape_distillation(off, target, single, scale)
    assert first > 50 * second


def random_rotations(batch: int) -> torch.Tensor:
    from face_expr_ros.core.camera import rotation_6d_to_matrix

    return rotation_6d_to_matrix(torch.randn(batch, 6, generator=RNG, dtype=torch.float64))


def test_rotation_distance_zero_at_target_and_four_one_minus_cos():
    from face_expr_ros.core.camera import euler_to_matrix

    target = random_rotations(3)
    mask = torch.ones(3, dtype=torch.float64)
    assert float(L.rotation_distance(target.clone(), target, mask)) < 1e-20
    turn = torch.as_tensor(euler_to_matrix(30.0, 0.0, 0.0))
    rotated = turn @ target
    torch.testing.assert_close(L.rotation_distance(rotated, target, mask),
                               torch.tensor(4 * (1 - np.cos(np.radians(30))), dtype=torch.float64))
    # masked faces do not count
    mask[1] = 0
    mixed = torch.stack((target[0], rotated[1], target[2]))
    assert float(L.rotation_distance(mixed, target, mask)) < 1e-20


def test_rotation_distance_gradient_turns_towards_the_target():
    from face_expr_ros.core.camera import euler_to_matrix, matrix_to_euler, rotation_6d_to_matrix

    target = torch.as_tensor(euler_to_matrix(20.0, -10.0, 0.0))[None]
    six = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = L.rotation_distance(rotation_6d_to_matrix(six), target, torch.ones(1, dtype=torch.float64))
    loss.backward()
    with torch.no_grad():
        stepped = rotation_6d_to_matrix(six - 0.05 * six.grad)
    yaw, pitch, _ = matrix_to_euler(stepped[0].numpy())
    assert 0 < yaw < 20 and -10 < pitch < 0  # a gradient step goes from frontal towards the target


def test_labelled_cross_entropy_ignores_unlabelled_and_gradient_raises_the_label():
    labels = torch.tensor([2, -1, 0])
    logits = torch.zeros(3, 7, requires_grad=True)
    loss = L.labelled_cross_entropy(logits, labels)
    torch.testing.assert_close(loss, torch.tensor(np.log(7.0), dtype=torch.float32))
    loss.backward()
    assert logits.grad[0, 2] < 0 and logits.grad[2, 0] < 0  # descent raises the labelled logit
    assert (logits.grad[0, [0, 1, 3, 4, 5, 6]] > 0).all()
    assert (logits.grad[1] == 0).all()  # no label, no gradient
    confident = torch.full((3, 7), -20.0)
    confident[0, 2] = confident[2, 0] = 20.0
    assert float(L.labelled_cross_entropy(confident, labels)) < 1e-12  # zero at the target
    none = torch.zeros(2, 7, requires_grad=True)
    empty = L.labelled_cross_entropy(none, torch.tensor([-1, -1]))
    assert float(empty.detach()) == 0
    empty.backward()
    assert (none.grad == 0).all()
    with pytest.raises(ValueError, match="labelled_cross_entropy"):
        L.labelled_cross_entropy(torch.zeros(3, 7), torch.zeros(2, dtype=torch.int64))


def test_presence_loss_zero_at_target_and_gradient_sign():
    targets = torch.tensor([1.0, 0.0])
    assert float(L.presence_loss(torch.tensor([30.0, -30.0]), targets)) < 1e-12
    logits = torch.zeros(2, requires_grad=True)
    L.presence_loss(logits, targets).backward()
    assert logits.grad[0] < 0 < logits.grad[1]  # faces pushed up, non-faces down
    with pytest.raises(ValueError, match="presence_loss"):
        L.presence_loss(torch.zeros(3), targets)


def test_loss_terms_add_weights_the_term():
    zero = torch.tensor(0.0)
    terms = L.LossTerms(torch.tensor(1.0), zero, zero, zero, zero, zero)
    terms.add("rotation", torch.tensor(2.0), 0.5)
    assert float(terms.total) == 2.0 and float(terms.rotation) == 2.0
    assert "emotion" not in terms.as_floats() and terms.as_floats()["rotation"] == 2.0


def test_wing_zero_at_target_continuous_and_normalised_by_face_size():
    l1 = landmarks()
    assert L.landmark_wing(l1.clone(), l1).abs() < 1e-12
    size = L.face_size(l1)
    width, curvature = 0.05, 0.01
    for fraction in (0.01, 0.05 - 1e-9, 0.05 + 1e-9, 0.2):  # both sides of the switch at w
        offset = torch.stack((fraction * size, torch.zeros_like(size)), -1)[:, None]
        value = L.landmark_wing(l1 + offset, l1, width, curvature)
        expected = (width * np.log1p(fraction / curvature) if fraction < width
                    else fraction - width + width * np.log1p(width / curvature))
        assert value.item() == pytest.approx(expected, rel=1e-4)
    shifted = l1 + 3.0
    torch.testing.assert_close(L.landmark_wing(2 * shifted, 2 * l1), L.landmark_wing(shifted, l1))
    with pytest.raises(ValueError, match="curvature"):
        L.landmark_wing(shifted, l1, 0.05, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        L.landmark_wing(shifted[:, :60], l1)


def test_wing_gradient_points_towards_the_target_and_is_steeper_than_mse_near_it():
    l1 = landmarks(1)
    l2 = (l1 + 1.0).requires_grad_(True)  # about 1 % of the face size off
    L.landmark_wing(l2, l1).backward()
    assert (l2.grad > 0).all(), "moving each point towards the target lowers the loss"
    wing_grad = l2.grad.abs().mean()
    l2.grad = None
    L.landmark_mse(l2, l1).backward()
    assert wing_grad > 10 * l2.grad.abs().mean(), "the log part pulls small errors far harder"


def test_total_loss_adds_the_wing_term_on_both_views_only_when_weighted():
    l1 = landmarks(2)
    l2 = l1 + 2.0
    zeros = (torch.zeros(2, 4), torch.zeros(2, 3))
    off = L.total_loss(l1, l2, None, None, None, None, *zeros, L.LossWeights(consistency=0.0))
    assert off.wing is None
    on = L.total_loss(l1, l2, None, None, None, None, *zeros,
                      L.LossWeights(consistency=0.0, wing=0.5))
    torch.testing.assert_close(on.wing, L.landmark_wing(l2, l1))
    torch.testing.assert_close(on.total - off.total, 0.5 * on.wing)
    affine = rotation_affine(2, 0.0, (0.0, 0.0))
    perm = torch.arange(68).expand(2, 68)
    both = L.total_loss(l1, l2, l1, l1 + 1.0, affine, perm, *zeros, L.LossWeights(wing=0.5))
    torch.testing.assert_close(both.wing, L.landmark_wing(l2, l1) + L.landmark_wing(l1 + 1.0, l1))
