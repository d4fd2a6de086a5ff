"""Landmark error metrics."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the torch metrics only call tensor methods: no import at run time
    import torch

OUTER_EYE_CORNERS = (36, 45)
INNER = slice(17, 68)  # brows, nose, eyes, mouth: the 51 points without the jaw
# iBUG 68 regions, for the per-region NME (the same inter-ocular normaliser)
REGIONS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36),
           "eyes": slice(36, 48), "mouth": slice(48, 68)}


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


def interocular_np(landmarks68: np.ndarray) -> np.ndarray:
    """(...,) distance between the outer eye corners 36 and 45 of (..., 68, 2) landmarks."""
    points = np.asarray(landmarks68, np.float64)
    a, b = OUTER_EYE_CORNERS
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def nme_per_image(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NME of (..., 68, 2) predictions against ``truth`` (numpy), as :func:`nme`.

    Returns:
        (...,) over all 68 points and (...,) over the 51 inner points 17-67.
    """
    error = point_errors(predicted, truth)
    return error.mean(-1), error[..., INNER].mean(-1)


def point_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(..., 68) distances of (..., 68, 2) predictions to ``truth`` over its outer inter-ocular
    distance (numpy)."""
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    if predicted.shape != truth.shape or predicted.shape[-2:] != (68, 2):
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape}: expected (..., 68, 2)")
    return np.linalg.norm(predicted - truth, axis=-1) / interocular_np(truth)[..., None]


def nme_regions(predicted: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-region NME of (..., 68, 2) predictions (:data:`REGIONS`; the inter-ocular distance of
    ``truth`` normalises every region, as :func:`nme_per_image`)."""
    error = point_errors(predicted, truth)
    return {name: error[..., part].mean(-1) for name, part in REGIONS.items()}
