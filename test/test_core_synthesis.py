"""Template selection and synthesis: sparse == dense, one template reproduces it, batch == single."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_expr_ros.core import synthesis as syn
from face_expr_ros.core.camera import euler_to_matrix


@pytest.fixture(scope="module")
def tensors(face_model):
    return tuple(torch.from_numpy(a) for a in
                 (face_model.neutral, face_model.identity_basis, face_model.expression_basis))


def sparse_coefficients(rng: np.random.Generator, n_active: int, n: int = 53) -> np.ndarray:
    beta = np.zeros(n)
    beta[rng.choice(n, n_active, replace=False)] = rng.uniform(0.1, 1.0, n_active)
    return beta


def test_selection_threshold_top_k_and_never_empty():
    beta = np.array([0.0, 0.5, 0.04, 0.9, 0.06, 0.3])
    np.testing.assert_array_equal(syn.select_templates(beta, threshold=0.05, top_k=None), [3, 1, 5, 4])
    np.testing.assert_array_equal(syn.select_templates(beta, threshold=0.05, top_k=2), [3, 1])
    np.testing.assert_array_equal(syn.select_templates(np.zeros(6), threshold=0.05), [0])
    np.testing.assert_array_equal(syn.select_templates(np.full(6, 0.01) + np.eye(6)[4] * 0.001), [4])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 3)), "1-D"), (np.array([]), "non-empty"), (np.array([0.1, np.nan]), "NaN"),
])
def test_selection_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        syn.select_templates(bad)


def test_sparse_equals_dense_when_all_nonzero_are_selected(face_model):
    rng = np.random.default_rng(3)
    for n_active in (1, 5, 20, 53):
        beta = sparse_coefficients(rng, n_active)
        identity = rng.normal(size=100)
        selected = syn.select_templates(beta, threshold=1e-6, top_k=None)
        assert len(selected) == n_active
        dense = syn.synthesize(face_model, beta, None, identity)
        sparse = syn.synthesize(face_model, beta, selected, identity)
        np.testing.assert_allclose(sparse, dense, atol=2e-5)


def test_selection_drops_small_coefficients_from_the_mesh(face_model):
    beta = np.zeros(53)
    beta[face_model.expression_index("jawOpen")] = 0.8
    beta[face_model.expression_index("eyeBlink_L")] = 0.01  # below the default threshold
    selected = syn.select_templates(beta)
    assert [face_model.expression_names[i] for i in selected] == ["jawOpen"]
    only_jaw = beta.copy()
    only_jaw[face_model.expression_index("eyeBlink_L")] = 0
    np.testing.assert_allclose(syn.synthesize(face_model, beta, selected),
                               syn.synthesize(face_model, only_jaw), atol=1e-6)


def test_one_coefficient_reproduces_its_template(face_model):
    for name in ("jawOpen", "mouthSmile_L", "eyeBlink_R"):
        beta = np.zeros(53)
        i = face_model.expression_index(name)
        beta[i] = 1.0
        mesh = syn.synthesize(face_model, beta, syn.select_templates(beta))
        np.testing.assert_allclose(mesh, face_model.neutral + face_model.expression_basis[i], atol=1e-6)
        assert np.abs(face_model.expression_basis[i]).max() > 0.1  # a real change, in cm


def test_vertex_subset_equals_full_mesh_rows(face_model):
    rng = np.random.default_rng(4)
    beta, identity = sparse_coefficients(rng, 7), rng.normal(size=40)
    ids = face_model.landmarks68
    full = syn.synthesize(face_model, beta, None, identity)
    np.testing.assert_allclose(syn.synthesize(face_model, beta, None, identity, vertex_ids=ids),
                               full[ids], atol=1e-6)


def test_posed_synthesis_applies_scale_rotation_translation(face_model):
    beta = np.zeros(53)
    r, t = euler_to_matrix(20, -5, 3), np.array([1.0, 2.0, 3.0])
    posed = syn.synthesize_posed(face_model, beta, r, t, 2.5)
    np.testing.assert_allclose(posed, 2.5 * face_model.neutral @ r.T + t, atol=1e-4)


def test_torch_batch_equals_single_and_numpy(face_model, tensors):
    rng = np.random.default_rng(5)
    betas = np.stack([sparse_coefficients(rng, k) for k in (1, 6, 30)])
    alphas = rng.normal(size=(3, 100))
    batch = syn.blend_shapes(*tensors, torch.tensor(alphas, dtype=torch.float32),
                             torch.tensor(betas, dtype=torch.float32))
    for b in range(3):
        single = syn.blend_shapes(*tensors, torch.tensor(alphas[b:b + 1], dtype=torch.float32),
                                  torch.tensor(betas[b:b + 1], dtype=torch.float32))
        torch.testing.assert_close(batch[b:b + 1], single, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(batch[b].numpy(), syn.synthesize(face_model, betas[b], None, alphas[b]),
                                   atol=1e-4)


def test_torch_mask_matches_numpy_selection_and_is_differentiable(face_model, tensors):
    rng = np.random.default_rng(6)
    betas = torch.tensor(rng.uniform(0, 1, size=(4, 53)) ** 4, dtype=torch.float32, requires_grad=True)
    mask = syn.selection_mask(betas, threshold=0.05, top_k=10)
    assert not mask.requires_grad
    for b in range(4):
        expected = np.zeros(53)
        expected[syn.select_templates(betas[b].detach().numpy(), threshold=0.05, top_k=10)] = 1
        np.testing.assert_array_equal(mask[b].numpy(), expected)
    mesh = syn.blend_shapes(*tensors, torch.zeros(4, 10), betas, mask)
    mesh[:, :, 1].sum().backward()
    grad = betas.grad.numpy()
    assert (grad[mask.numpy() == 0] == 0).all(), "unselected templates get no gradient"
    assert np.abs(grad[mask.numpy() == 1]).sum() > 0


def test_identity_is_validated(face_model):
    with pytest.raises(ValueError, match="at most 100"):
        syn.synthesize(face_model, np.zeros(53), identity=np.zeros(101))
    with pytest.raises(ValueError, match=r"shape \(53,\)"):
        syn.synthesize(face_model, np.zeros(52))
