"""Template selection and expression mesh synthesis (the patent's claims 1 and 7).

``V = neutral + sum_k alpha_k I_k + sum_{i in selected} beta_i E_i``, then ``s R V + t``.
numpy functions serve inference (sparse: only the selected templates are touched); the torch
functions are dense, batched and differentiable for training.
"""
from __future__ import annotations

import numpy as np
import torch

from .camera import pose_points
from .facemodel import FaceModel

DEFAULT_THRESHOLD = 0.05
"""Coefficients below this change a vertex by under ~0.05 x template amplitude (a few tenths of a
millimetre for most templates): they are dropped from synthesis."""
DEFAULT_TOP_K = 20
"""At most this many templates are synthesised; ``None`` keeps every one above the threshold."""


def select_templates(coefficients: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                     top_k: int | None = DEFAULT_TOP_K) -> np.ndarray:
    """Indices of the templates used for synthesis, largest coefficient first.

    A template is selected when its coefficient is ``>= threshold``; of those, at most ``top_k``
    (largest first). The largest coefficient is always selected, so the result is never empty.

    Args:
        coefficients: (E,) expression coefficients in [0, 1].
    Returns:
        (n,) int64 indices, 1 <= n <= E, ordered by decreasing coefficient.
    """
    beta = np.asarray(coefficients, dtype=np.float64)
    if beta.ndim != 1 or beta.size == 0:
        raise ValueError(f"coefficients must be a non-empty 1-D array, got shape {beta.shape}")
    if not np.isfinite(beta).all():
        raise ValueError("coefficients hold NaN or infinite values")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    order = np.argsort(-beta, kind="stable")
    keep = order[beta[order] >= threshold]
    if top_k is not None:
        keep = keep[:top_k]
    return keep if keep.size else order[:1]


def identity_shape(model: FaceModel, identity: np.ndarray | None,
                   vertex_ids: np.ndarray | None = None) -> np.ndarray:
    """``neutral + sum_k alpha_k I_k`` (cm) for all vertices or only ``vertex_ids``.

    Args:
        identity: (K',) coefficients for the first K' <= K identity modes, or None (zeros).
    Returns:
        (V, 3) or (len(vertex_ids), 3) float32.
    """
    neutral = model.neutral if vertex_ids is None else model.neutral[vertex_ids]
    if identity is None:
        return neutral.copy()
    alpha = np.asarray(identity, dtype=np.float32)
    if alpha.ndim != 1 or alpha.size > model.n_identity:
        raise ValueError(f"identity must be 1-D with at most {model.n_identity} values, got {alpha.shape}")
    basis = model.identity_basis[: alpha.size]
    if vertex_ids is not None:
        basis = basis[:, vertex_ids]
    return neutral + np.einsum("k,kvc->vc", alpha, basis)  # sum_k alpha_k I_k


def synthesize(model: FaceModel, coefficients: np.ndarray, selected: np.ndarray | None = None,
               identity: np.ndarray | None = None,
               vertex_ids: np.ndarray | None = None) -> np.ndarray:
    """Expression mesh in model space from the selected templates only.

    Args:
        coefficients: (E,) expression coefficients.
        selected: indices of the templates to use (:func:`select_templates`); None = all (dense).
        identity: (K',) identity coefficients or None.
        vertex_ids: compute only these vertices (e.g. landmarks), or None for all.
    Returns:
        (V, 3) or (len(vertex_ids), 3) float32, cm.
    """
    beta = np.asarray(coefficients, dtype=np.float32)
    if beta.shape != (model.n_expressions,):
        raise ValueError(f"coefficients must have shape ({model.n_expressions},), got {beta.shape}")
    mesh = identity_shape(model, identity, vertex_ids)
    if selected is None:  # dense: the whole basis, without copying it
        weights, templates = beta, model.expression_basis
    else:
        idx = np.asarray(selected, dtype=np.int64)
        weights, templates = beta[idx], model.expression_basis[idx]
    if vertex_ids is not None:
        templates = templates[:, vertex_ids]
    # einsum rather than BLAS `@`: with the cores busy, `@` measured 8-16 ms here (bench/synthesis.py)
    mesh += np.einsum("e,evc->vc", weights, templates)  # sum_{i in selected} beta_i E_i
    return mesh


def synthesize_posed(model: FaceModel, coefficients: np.ndarray, rotation: np.ndarray,
                     translation: np.ndarray, scale: float, selected: np.ndarray | None = None,
                     identity: np.ndarray | None = None,
                     vertex_ids: np.ndarray | None = None) -> np.ndarray:
    """:func:`synthesize`, then ``s R V + t`` (core camera frame)."""
    mesh = synthesize(model, coefficients, selected, identity, vertex_ids)
    return pose_points(mesh, np.asarray(rotation, np.float32), np.asarray(translation, np.float32),
                       np.float32(scale)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# torch: dense, batched, differentiable
# ---------------------------------------------------------------------------------------------
def blend_shapes(neutral: torch.Tensor, identity_basis: torch.Tensor, expression_basis: torch.Tensor,
                 identity: torch.Tensor, coefficients: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Batched ``neutral + alpha I + (mask * beta) E``.

    Args:
        neutral: (V, 3); identity_basis: (K, V, 3); expression_basis: (E, V, 3)
        identity: (B, K') with K' <= K; coefficients: (B, E)
        mask: optional (B, E) 0/1 template selection (straight-through: multiply, no gradient).
    Returns:
        (B, V, 3) vertices.
    """
    beta = coefficients if mask is None else coefficients * mask
    k = identity.shape[-1]
    shape = torch.einsum("bk,kvc->bvc", identity, identity_basis[:k])  # sum_k alpha_bk I_k
    expr = torch.einsum("be,evc->bvc", beta, expression_basis)  # sum_e beta_be E_e
    return neutral + shape + expr


def selection_mask(coefficients: torch.Tensor, threshold: float = DEFAULT_THRESHOLD,
                   top_k: int | None = DEFAULT_TOP_K) -> torch.Tensor:
    """(B, E) 0/1 float mask of :func:`select_templates`, batched, without gradient."""
    with torch.no_grad():
        beta = coefficients.detach()
        mask = beta >= threshold
        if top_k is not None and top_k < beta.shape[-1]:
            kth = torch.topk(beta, top_k, dim=-1).values[..., -1:]
            mask &= beta >= kth
        best = torch.nn.functional.one_hot(beta.argmax(-1), beta.shape[-1]).bool()
        return (mask | best).to(coefficients.dtype)
