"""Re-choose the feature landmarks' mesh vertices (iBUG 17-67) so they mean what human labellers mean.

A face model's landmark vertices are one convention; 300-W's labellers follow another. Where they
differ, the network's projected landmark is off the human label by about the same amount on every
face, training faces included (bench/fit_landmarks.py measures it: inner-lip points 61, 63, 65 and
67 placed 3-4 % of the inter-ocular distance too far out, the nose bridge 2-3 % too low). No
network can remove that offset: it is in the definition. This module picks, for each feature
landmark, the mesh vertex near the model's own whose projections, on the network's meshes of
labelled training faces, are closest to the labels on average. The landmarks stay fixed vertices
(DESIGN.md, "Contour landmarks"); the jaw (0-16) stays dynamic and is not touched.

Left and right are chosen together: landmark ``k`` takes vertex ``v`` and its mirror partner
``FLIP_PERMUTATION_68[k]`` takes the vertex nearest to ``v`` reflected in x = 0, so a horizontally
flipped face (an augmentation of training) keeps its landmarks' meaning. Landmarks on the midline
(their own partner) choose among vertices on the midline.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..core.camera import project_orthographic
from ..core.facemodel import N_JAW, N_LANDMARKS, FaceModel
from ..core.reconstruct import SELLION
from ..core.synthesis import synthesize_posed
from .augmentation import FLIP_PERMUTATION_68
from .metrics import interocular_np


def mirror_vertices(neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each vertex of a (V, 3) mesh, the vertex nearest to its reflection in x = 0, and the
    distance to it (mesh units): ((V,) int64, (V,) float64)."""
    points = np.asarray(neutral, np.float64)
    distance, index = cKDTree(points).query(points * np.array([-1.0, 1.0, 1.0]))
    return index.astype(np.int64), distance


def candidate_vertices(neutral: np.ndarray, landmarks68: np.ndarray, radius: float) -> np.ndarray:
    """Sorted vertex ids within ``radius`` (mesh units, on the neutral mesh) of any feature
    landmark vertex (iBUG 17-67), the landmarks' own included."""
    points = np.asarray(neutral, np.float64)
    tree = cKDTree(points)
    near = tree.query_ball_point(points[np.asarray(landmarks68)[N_JAW:]], radius)
    return np.unique(np.concatenate([np.asarray(ids, np.int64) for ids in near]))


def projected_vertices(model: FaceModel, identity: np.ndarray, expression: np.ndarray,
                       rotation: np.ndarray, translation: np.ndarray, scale: np.ndarray,
                       vertex_ids: np.ndarray, input_size: int) -> np.ndarray:
    """(N, C, 2) crop pixels of ``vertex_ids`` on N faces' posed meshes, projected as the
    landmarks are (core.projection: ``s R V + t``, orthographic, centred on the crop).

    identity (N, K) uses the model's first K modes; expression (N, E); rotation (N, 3, 3);
    translation (N, 3); scale (N,)."""
    centre = ((input_size - 1) / 2.0,) * 2
    return np.stack([project_orthographic(
        synthesize_posed(model, beta, r, t, float(s), identity=alpha, vertex_ids=vertex_ids),
        centre) for alpha, beta, r, t, s in zip(identity, expression, rotation, translation, scale)])


def candidate_errors(projected: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(68, C) mean over faces of ``|projected candidate c - label k| / inter-ocular`` from
    (N, C, 2) projected candidates and (N, 68, 2) labels (the NME's per-point term)."""
    labels = np.asarray(labels, np.float64)
    projected = np.asarray(projected, np.float64)
    scale = interocular_np(labels)[:, None]
    # one landmark at a time: (N, C) each, not an (N, 68, C, 2) array (1.3 GB for helen's split)
    return np.stack([(np.linalg.norm(projected - labels[:, k, None], axis=-1) / scale).mean(0)
                     for k in range(labels.shape[1])])


def select_vertices(errors: np.ndarray, candidates: np.ndarray, landmarks68: np.ndarray,
                    neutral: np.ndarray, radius: float, midline: float,
                    keep: tuple[int, ...] = (SELLION,)) -> np.ndarray:
    """(68,) landmark vertices: the jaw's unchanged, each feature landmark's the candidate of least
    error, chosen with its mirror partner.

    Args:
        errors: (68, C) :func:`candidate_errors` of ``candidates``.
        candidates: (C,) vertex ids.
        landmarks68: (68,) the model's own landmark vertices.
        neutral: (V, 3) the neutral mesh.
        radius: a landmark's vertex stays within this distance of its own (mesh units).
        midline: a midline landmark's vertex has ``|x| <= midline`` (mesh units).
        keep: landmarks that stay on the model's vertex (with their partners). By default the
            sellion (27): it is the origin of the face frames, where consumers of the message
            place the model's mesh (docs/conventions.md).
    """
    errors = np.asarray(errors, np.float64)
    candidates = np.asarray(candidates, np.int64)
    if errors.shape != (N_LANDMARKS, len(candidates)):
        raise ValueError(f"errors must be (68, {len(candidates)}), got {errors.shape}")
    points = np.asarray(neutral, np.float64)
    mirror, _ = mirror_vertices(points)
    column = {int(v): c for c, v in enumerate(candidates)}
    partner_column = np.array([column.get(int(mirror[v]), -1) for v in candidates])
    own = np.asarray(landmarks68, np.int64)
    chosen = own.copy()
    for k in range(N_JAW, N_LANDMARKS):
        partner = int(FLIP_PERMUTATION_68[k])
        if partner < k or k in keep or partner in keep:
            continue  # chosen with its partner, or kept
        near = np.linalg.norm(points[candidates] - points[own[k]], axis=1) <= radius
        cost = np.full(len(candidates), np.inf)
        if partner == k:
            ok = near & (np.abs(points[candidates, 0]) <= midline)
            cost[ok] = errors[k, ok]
        else:
            ok = near & (partner_column >= 0)
            cost[ok] = errors[k, ok] + errors[partner, partner_column[ok]]
        if np.isfinite(cost).any():
            best = int(np.argmin(cost))
            chosen[k] = candidates[best]
            if partner != k:
                chosen[partner] = candidates[partner_column[best]]
    return chosen
