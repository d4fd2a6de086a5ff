"""Landmark error metrics."""
from __future__ import annotations

import torch

OUTER_EYE_CORNERS = (36, 45)


def interocular(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) -> (B,) distance between the outer eye corners (iBUG 36 and 45)."""
    a, b = OUTER_EYE_CORNERS
    return (landmarks[:, a] - landmarks[:, b]).norm(dim=-1)


def nme(predicted: torch.Tensor, target: torch.Tensor,
        reference: torch.Tensor | None = None) -> torch.Tensor:
    """Per-face normalised mean error: mean point distance / inter-ocular distance (outer corners).

    Args:
        predicted, target: (B, N, 2), the same N points (68, or the 51 inner ones 17-67).
        reference: (B, 68, 2) landmarks giving the inter-ocular distance (default ``target``,
            which must then hold all 68).
    Returns:
        (B,) NME; 0.10 is the usual failure threshold.
    """
    reference = target if reference is None else reference
    if reference.shape[1] != 68:
        raise ValueError("nme: pass the full 68-point target as reference when comparing a subset")
    return (predicted - target).norm(dim=-1).mean(dim=1) / interocular(reference).clamp_min(1e-6)
