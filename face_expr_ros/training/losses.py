"""Training losses (the patent's claim 2): landmark MSE, affine consistency, priors.

Notation (docs/training.md): L1 = annotated landmarks, L2 = the network's projected model landmarks
on the image, A = the random affine of the augmentation (2x3, with a left/right re-indexing P when
it flips), L3 = A(L1) the annotated landmarks carried to the augmented image, L2' = the network's
landmarks on the augmented image. All point sets are (B, 68, 2) pixels of the network input.

    L_mse  = mean_i ||L2_i - L1_i||^2 / d^2
    L_cons = mean_i ||L2'_i - L3_i||^2 / d'^2 + mean_i ||L2'_i - A(L2)_{P(i)}||^2 / d'^2
    L      = L_mse + w_cons L_cons + w_id mean(alpha^2) + w_sparse mean(beta)

with d, d' the face sizes (square root of the landmark box area) of L1 and L3, so the losses do not
depend on the crop scale. The second consistency term ties the two predictions together through A
without labels; gradients flow into both L2 and L2'.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..core.camera import apply_affine
from ..core.contour import N_JAW


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms beside the landmark MSE (defaults: docs/training.md, ablation)."""

    consistency: float = 1.0
    identity_prior: float = 1e-3
    expression_sparsity: float = 1e-3
    blendshapes: float = 0.0  # expression distillation from the teacher's ARKit blendshapes
    # divide each shape's error by the teacher's standard deviation of that shape over the training
    # faces (docs/training.md): rare, small shapes (blinks, brows) weigh as much as smiles
    blendshapes_standardised: bool = False
    rotation: float = 0.0     # the teacher's head rotation (chordal distance)
    emotion: float = 0.0      # cross-entropy of the emotion head with the human labels
    coefficient_emotion: float = 0.0  # cross-entropy of a linear probe on the 53 coefficients
    presence: float = 0.0     # BCE of the presence head (faces 1, no face / half a face 0)
    # weight of the 51 feature points (brows, eyes, nose, mouth) against the 17 jaw points in the
    # landmark MSE and the consistency term: the jaw labels are the least certain (the outline
    # moves over the face as it turns; the teacher's map is weakest there) and, squared, their
    # errors drown the features' (docs/training.md, "Feature-point weight")
    feature_points: float = 1.0
    # a further factor on the 20 mouth points (iBUG 48-67) over ``feature_points``: the mouth
    # carries most of the gap to the teacher and the network under-opens mouths (docs/training.md,
    # "Mouth-point weight"; bench/landmark_floor.py)
    mouth_points: float = 1.0
    # Wing loss (Feng et al. 2018) on each point's distance over the face size, beside the MSE, on
    # the original and the augmented view (L2 against L1, L2' against L3): the MSE's gradient
    # fades as a point nears its label, so once the large errors are gone the small and medium
    # ones, which the NME is the mean of, are hardly pulled; the wing's log part keeps pulling
    # them (docs/training.md, "Wing term"). 0: off
    wing: float = 0.0
    wing_width: float = 0.05     # w: the log part covers distances below 5 % of the face size
    wing_curvature: float = 0.01  # epsilon: the log part's steepness (gradient w / epsilon at 0)


MOUTH = slice(48, 68)  # the iBUG mouth points (outer lip 48-59, inner lip 60-67)


def face_size(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) -> (B,) square root of the landmark bounding-box area, at least 1 pixel."""
    extent = landmarks.amax(dim=1) - landmarks.amin(dim=1)
    return torch.sqrt(extent.prod(dim=-1).clamp_min(1.0))


@functools.lru_cache(maxsize=8)  # one tensor per (weights, device), not one per training step
def point_weights(feature_points: float, device: torch.device | None = None,
                  mouth_points: float = 1.0) -> torch.Tensor | None:
    """(68,) weights of the iBUG points, the 17 jaw points 1, the 51 feature points
    ``feature_points`` and, of these, the 20 mouth points ``feature_points * mouth_points``, scaled
    to mean 1 (so the loss keeps its size); None when both are 1.0 (unweighted)."""
    for name, value in (("feature_points", feature_points), ("mouth_points", mouth_points)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if feature_points == 1.0 and mouth_points == 1.0:
        return None
    weights = torch.ones(68, device=device)
    weights[N_JAW:] = feature_points
    weights[MOUTH] *= mouth_points
    return weights / weights.mean()


def _check_points(name: str, predicted: torch.Tensor, target: torch.Tensor) -> None:
    if predicted.shape != target.shape or predicted.shape[-1] != 2:
        raise ValueError(f"{name}: shapes {tuple(predicted.shape)} and {tuple(target.shape)} "
                         "must be equal (B, N, 2)")


def _weighted(name: str, per_point: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """(B, N) per-point values times (N,) ``weights`` (None: unchanged)."""
    if weights is None:
        return per_point
    if weights.shape != per_point.shape[1:]:
        raise ValueError(f"{name}: weights {tuple(weights.shape)} for {per_point.shape[1]} points")
    return per_point * weights


def landmark_mse(predicted: torch.Tensor, target: torch.Tensor,
                 size: torch.Tensor | None = None,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over points and batch of ``w_i ||predicted_i - target_i||^2 / size^2``.

    Args:
        predicted, target: (B, N, 2) pixels.
        size: (B,) normaliser; default :func:`face_size` of ``target``.
        weights: (N,) per-point weights of mean 1 (:func:`point_weights`); None: all 1.
    """
    _check_points("landmark_mse", predicted, target)
    size = face_size(target) if size is None else size
    squared = _weighted("landmark_mse", ((predicted - target) ** 2).sum(-1), weights)  # (B, N)
    return (squared.mean(dim=1) / size ** 2).mean()


def landmark_wing(predicted: torch.Tensor, target: torch.Tensor, width: float = 0.05,
                  curvature: float = 0.01, size: torch.Tensor | None = None,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over points and batch of ``w_i wing(||predicted_i - target_i|| / size)``, with
    ``wing(d) = width ln(1 + d / curvature)`` below ``width`` and ``d - C`` above it (C makes it
    continuous), Feng et al. 2018, on the point distance (the NME's) instead of per coordinate.

    Args:
        predicted, target: (B, N, 2) pixels.
        width, curvature: w and epsilon, as fractions of the face size (both > 0).
        size: (B,) normaliser; default :func:`face_size` of ``target``.
        weights: (N,) per-point weights of mean 1 (:func:`point_weights`); None: all 1.
    """
    _check_points("landmark_wing", predicted, target)
    if not (width > 0 and curvature > 0):
        raise ValueError(f"landmark_wing: width and curvature must be > 0, got {width}, {curvature}")
    size = face_size(target) if size is None else size
    # the distance, smoothed below 1e-6 of the face size (the norm's gradient is undefined at 0)
    distance = torch.sqrt(((predicted - target) ** 2).sum(-1) + (1e-6 * size[:, None]) ** 2)
    distance = distance / size[:, None] - 1e-6
    offset = width - width * math.log1p(width / curvature)
    wing = torch.where(distance < width, width * torch.log1p(distance / curvature),
                       distance - offset)
    return _weighted("landmark_wing", wing, weights).mean()


def permute_points(points: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) points re-indexed per sample: ``out[b, i] = points[b, permutation[b, i]]``."""
    return torch.gather(points, 1, permutation[..., None].expand(-1, -1, points.shape[-1]))


def consistency_loss(predicted_augmented: torch.Tensor, target_augmented: torch.Tensor,
                     predicted: torch.Tensor, affine: torch.Tensor,
                     permutation: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Consistency of the three landmark sets through the random affine A.

    Args:
        predicted_augmented: L2', (B, N, 2) on the augmented image.
        target_augmented: L3 = A(L1) re-indexed, (B, N, 2).
        predicted: L2, (B, N, 2) on the original image.
        affine: (B, 2, 3) A, original -> augmented pixels.
        permutation: (B, N) int64 re-indexing applied after A (identity when not flipped).
        weights: (N,) per-point weights (:func:`point_weights`); None: all 1.
    """
    size = face_size(target_augmented)
    carried = permute_points(apply_affine(affine, predicted), permutation)  # A(L2), re-indexed
    return (landmark_mse(predicted_augmented, target_augmented, size, weights)
            + landmark_mse(predicted_augmented, carried, size, weights))


def identity_prior(identity: torch.Tensor) -> torch.Tensor:
    """Gaussian prior of the identity modes (unit standard deviation): mean of alpha^2."""
    return (identity ** 2).mean()


def expression_sparsity(expression: torch.Tensor) -> torch.Tensor:
    """L1 of the coefficients (all >= 0): few templates above the selection threshold."""
    return expression.mean()


def blendshape_distillation(expression_arkit: torch.Tensor, target: torch.Tensor,
                            mask: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference between the ARKit view of the predicted coefficients and the
    teacher's blendshape scores, over the faces that have teacher scores.

    Args:
        expression_arkit: (B, 52) ``coefficients @ arkit_matrix.T`` (core.arkit).
        target: (B, 52) teacher scores in [0, 1], ARKit order.
        mask: (B, 52) 1 where the teacher gave a score (faces without scores: all 0).
        scale: (52,) per-shape divisor of the difference (the teacher's standard deviation over
            the training faces: a standardised error), or None for raw scores.
    """
    if expression_arkit.shape != target.shape or mask.shape != target.shape:
        raise ValueError(f"blendshape_distillation: shapes {tuple(expression_arkit.shape)}, "
                         f"{tuple(target.shape)}, {tuple(mask.shape)} must be equal (B, 52)")
    difference = expression_arkit - target
    if scale is not None:
        difference = difference / scale
    squared = difference ** 2 * mask
    return squared.sum() / mask.sum().clamp_min(1.0)


def rotation_distance(predicted: torch.Tensor, target: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """Mean chordal distance ``||R - R_t||_F^2 = 4 (1 - cos angle)`` over the faces with ``mask``
    1 (smooth everywhere, unlike the geodesic angle's arccos at 0).

    Args:
        predicted, target: (B, 3, 3) rotations (core convention).
        mask: (B,) 1 where the teacher gave a rotation.
    """
    if predicted.shape != target.shape or predicted.shape[-2:] != (3, 3):
        raise ValueError(f"rotation_distance: shapes {tuple(predicted.shape)} and "
                         f"{tuple(target.shape)} must be equal (B, 3, 3)")
    squared = ((predicted - target) ** 2).sum(dim=(-2, -1))
    return (squared * mask).sum() / mask.sum().clamp_min(1.0)


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the samples with a label (``labels >= 0``; -1 = none); 0 when no
    sample in the batch has one.

    Args:
        logits: (B, C). labels: (B,) int64 class indices or -1.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"labelled_cross_entropy: logits {tuple(logits.shape)} must be (B, C) "
                         f"and labels {tuple(labels.shape)} (B,)")
    known = labels >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0  # keeps the graph (DDP) with a zero gradient
    return torch.nn.functional.cross_entropy(logits[known], labels[known])


def presence_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of presence logits (B,) against targets (B,) in {0, 1}."""
    if logits.shape != targets.shape:
        raise ValueError(f"presence_loss: shapes {tuple(logits.shape)} and {tuple(targets.shape)} "
                         "must be equal (B,)")
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.float())


@dataclass
class LossTerms:
    """Each term (for logging) and their weighted sum ``total`` (for backward)."""

    total: torch.Tensor
    mse: torch.Tensor
    consistency: torch.Tensor
    identity_prior: torch.Tensor
    expression_sparsity: torch.Tensor
    blendshapes: torch.Tensor
    rotation: torch.Tensor | None = None
    emotion: torch.Tensor | None = None
    coefficient_emotion: torch.Tensor | None = None
    presence: torch.Tensor | None = None
    wing: torch.Tensor | None = None

    def add(self, name: str, value: torch.Tensor, weight: float) -> None:
        """Record term ``name`` and add ``weight * value`` to the total."""
        setattr(self, name, value)
        self.total = self.total + weight * value

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in vars(self).items() if v is not None}


def total_loss(l1: torch.Tensor, l2: torch.Tensor, l3: torch.Tensor | None,
               l2_augmented: torch.Tensor | None, affine: torch.Tensor | None,
               permutation: torch.Tensor | None, identity: torch.Tensor, expression: torch.Tensor,
               weights: LossWeights = LossWeights(),
               blendshapes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> LossTerms:
    """``L_mse + w_c L_cons + priors``; without an augmented view the consistency term is 0.

    ``blendshapes``: (expression_arkit, target, mask[, scale]) for :func:`blendshape_distillation`
    (weight ``weights.blendshapes``); None or weight 0: the term is 0. The rotation, emotion and
    presence terms are added by the caller with :meth:`LossTerms.add`.
    """
    points = point_weights(weights.feature_points, l2.device, weights.mouth_points)
    mse = landmark_mse(l2, l1, weights=points)
    zero = mse.new_zeros(())
    cons = zero
    if weights.consistency > 0 and l2_augmented is not None:
        cons = consistency_loss(l2_augmented, l3, l2, affine, permutation, points)
    id_prior = identity_prior(identity) if weights.identity_prior > 0 else zero
    sparsity = expression_sparsity(expression) if weights.expression_sparsity > 0 else zero
    distill = zero
    if weights.blendshapes > 0 and blendshapes is not None:
        distill = blendshape_distillation(*blendshapes)
    total = (mse + weights.consistency * cons + weights.identity_prior * id_prior
             + weights.expression_sparsity * sparsity + weights.blendshapes * distill)
    terms = LossTerms(total, mse, cons, id_prior, sparsity, distill)
    if weights.wing > 0:
        wing = landmark_wing(l2, l1, weights.wing_width, weights.wing_curvature, weights=points)
        if l2_augmented is not None and l3 is not None:
            wing = wing + landmark_wing(l2_augmented, l3, weights.wing_width,
                                        weights.wing_curvature, weights=points)
        terms.add("wing", wing, weights.wing)
    return terms
