"""Re-choose the landmarks' mesh vertices (feature points 17-67, jaw curves' anchors) so they mean
what human labellers mean.

A face model's landmark vertices are one convention; 300-W's labellers follow another. Where they
differ, the network's projected landmark is off the human label by about the same amount on every
face, training faces included (bench/fit_landmarks.py measures it: inner-lip points 61, 63, 65 and
67 placed 3-4 % of the inter-ocular distance too far out, the nose bridge 2-3 % too low). No
network can remove that offset: it is in the definition. This module picks, for each feature
landmark, the mesh vertex near the model's own whose projections, on the network's meshes of
labelled training faces, are closest to the labels on average. The landmarks stay fixed vertices
(DESIGN.md, "Contour landmarks").

The jaw (0-16) stays dynamic, but where along the jaw line its landmarks fall is set by the
anchors its contour curves are sliced through (core.contour), ICT's static jaw vertices by default
and as much a convention: :func:`jaw_candidate_errors` scores the curve through each vertex near an
anchor as the feature candidates are scored, and :func:`jaw_outline_distances` lets the fit leave
out anchors whose curve would no longer reach the outline of a turned face.

Left and right are chosen together: landmark ``k`` takes vertex ``v`` and its mirror partner
``FLIP_PERMUTATION_68[k]`` takes the vertex nearest to ``v`` reflected in x = 0, so a horizontally
flipped face (an augmentation of training) keeps its landmarks' meaning. Landmarks on the midline
(their own partner) choose among vertices on the midline.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..core import contour
from ..core.camera import euler_to_matrix, project_orthographic
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


def candidate_vertices(neutral: np.ndarray, landmarks68: np.ndarray, radius: float,
                       landmarks: Sequence[int] = range(N_JAW, N_LANDMARKS),
                       limit: int | None = None) -> np.ndarray:
    """Sorted vertex ids within ``radius`` (mesh units, on the neutral mesh) of any of
    ``landmarks``' vertices (by default the feature landmarks 17-67), the landmarks' own included;
    only vertices below ``limit`` (e.g. the face area's vertex count) when given."""
    points = np.asarray(neutral, np.float64)
    tree = cKDTree(points)
    near = tree.query_ball_point(points[np.asarray(landmarks68)[list(landmarks)]], radius)
    ids = np.unique(np.concatenate([np.asarray(ids, np.int64) for ids in near]))
    return ids if limit is None else ids[ids < limit]


def projected_vertices(model: FaceModel, identity: np.ndarray, expression: np.ndarray,
                       rotation: np.ndarray, translation: np.ndarray, scale: np.ndarray,
                       vertex_ids: np.ndarray, input_size: int) -> np.ndarray:
    """(N, C, 2) crop pixels of ``vertex_ids`` on N faces' posed meshes, projected as the
    landmarks are (core.projection: ``s R V + t``, orthographic, centred on the crop).

    identity (N, K) uses the model's first K modes; expression (N, E); rotation (N, 3, 3);
    translation (N, 3); scale (N,)."""
    centre = ((input_size - 1) / 2.0,) * 2
    faces = zip(identity, expression, rotation, translation, scale)
    return np.stack([project_orthographic(
        synthesize_posed(model, beta, r, t, float(s), identity=alpha, vertex_ids=vertex_ids),
        centre) for alpha, beta, r, t, s in faces])


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
                    keep: tuple[int, ...] = (SELLION,),
                    landmarks: Sequence[int] = range(N_JAW, N_LANDMARKS)) -> np.ndarray:
    """(68,) landmark vertices: those of ``landmarks`` (by default the feature landmarks 17-67)
    each the candidate of least error, chosen with its mirror partner; the others unchanged.

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
        landmarks: the landmarks to choose (the jaw's anchors: ``range(N_JAW)``).
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
    for k in landmarks:
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


def jaw_candidate_errors(model: FaceModel, projected: np.ndarray, labels: np.ndarray,
                         candidates: np.ndarray, anchors: np.ndarray,
                         radius: float) -> np.ndarray:
    """(68, C) mean over faces of ``|jaw landmark k - label k| / inter-ocular`` when jaw landmark
    ``k``'s contour curve is sliced through candidate ``c`` instead of its anchor (inf where ``c``
    is further than ``radius`` from the anchor, and in the feature rows 17-67).

    Each candidate curve is built as core.contour builds the shipped ones (the chin curves start
    below the lowest cheek row of ``anchors``) and its point is chosen per face as at run time:
    the largest ``side * (u - u_c)`` on a cheek curve, ``|(u, v) - (u_c, v_c)|`` on a chin
    curve, in crop pixels (an orthographic projection keeps the order of both scores).

    Args:
        projected: (N, V, 2) crop pixels of the face area's vertices ``0..V-1`` on N faces
            (:func:`projected_vertices`).
        labels: (N, 68, 2) human labels in the same pixels.
        candidates: (C,) face-area vertex ids.
        anchors: (17,) the curves' current static vertices.
        radius: mesh units.
    """
    mesh = contour.SliceMesh.of(model)
    projected = np.asarray(projected, np.float32)
    labels = np.asarray(labels, np.float64)
    scale = interocular_np(labels)
    centre = projected[:, mesh.centre_ids].mean(axis=1)  # (N, 2)
    errors = np.full((N_LANDMARKS, len(candidates)), np.inf)
    for k, c, side, ids, weights in candidate_curves(mesh, candidates, anchors, radius):
        chosen = curve_choice(projected, centre, ids, weights, k in contour.CHIN_LANDMARKS, side)
        errors[k, c] = (np.linalg.norm(chosen - labels[:, k], axis=-1) / scale).mean()
    return errors


def candidate_curves(mesh: contour.SliceMesh, candidates: np.ndarray, anchors: np.ndarray,
                     radius: float) -> Iterator[tuple[int, int, float, np.ndarray, np.ndarray]]:
    """Every (jaw landmark k, candidate column c) with the candidate within ``radius`` of k's
    anchor and a slice through it that reaches the face area: ``(k, c, side, ids, weights)``,
    the curve built as core.contour builds the shipped ones (the chin curves start below the
    lowest cheek row of ``anchors``); ``side`` is the candidate's sign of x."""
    lowest = contour.lowest_cheek_height(mesh.neutral[anchors])
    for k in range(N_JAW):
        near = np.linalg.norm(mesh.neutral[candidates] - mesh.neutral[anchors[k]], axis=1)
        for c in np.nonzero(near <= radius)[0]:
            anchor = mesh.neutral[candidates[c]]
            try:
                ids, weights = contour.jaw_curve(mesh, k, anchor, lowest)
            except ValueError:
                continue  # the slice misses the face area there
            yield k, int(c), float(np.sign(anchor[0])), ids, weights


def curve_choice(projected: np.ndarray, centre: np.ndarray, ids: np.ndarray, weights: np.ndarray,
                 chin: bool, side: float) -> np.ndarray:
    """(N, 2) the point one jaw curve gives on N faces (core.contour.choose_on_curves), from their
    (N, V, 2) projected vertices and (N, 2) projected face centres; ``ids``/``weights`` (P, 3) are
    the curve's points."""
    points = np.einsum("pk,npkd->npd", np.asarray(weights, np.float32),
                       projected[:, ids])  # (N, P, 2)
    index = contour.choose_on_curves((points - centre[:, None])[:, None], np.array([chin]),
                                     np.array([side]))[:, 0]
    return points[np.arange(len(points)), index]


def projected_jaw(curves: contour.ContourCurves, projected: np.ndarray) -> np.ndarray:
    """(N, 17, 2) the dynamic jaw landmarks of N faces from their (N, V, 2) projected vertices
    (the choice of core.contour.jaw_landmarks, made in crop pixels)."""
    projected = np.asarray(projected, np.float32)
    centre = projected[:, curves.centre_vertex_ids].mean(axis=1)
    points = np.einsum("cpk,ncpkd->ncpd", curves.weights,
                       projected[:, curves.vertex_ids])  # (N, C, P, 2)
    index = contour.choose_on_curves(points - centre[:, None, None], curves.is_chin, curves.side)
    rows = np.arange(len(points))[:, None]
    return points[rows, np.arange(curves.n_curves)[None], index]


OUTLINE_POSES: tuple[tuple[float, float], ...] = (
    (30, 0), (-30, 0), (60, 0), (-60, 0), (30, -15), (-30, -15), (30, 15), (-30, 15),
    (60, -15), (-60, -15), (60, 15), (-60, 15))
"""(yaw, pitch) degrees at which a cheek curve must reach the face's outline on the far side."""
SILHOUETTE_PX = 512
"""Size of the silhouette render; the whole face area (30 cm at most) fits."""


def posed_for_outline(model: FaceModel, yaw: float, pitch: float,
                      vertices: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) vertices (default the neutral mesh) rotated into the core camera frame, in
    silhouette pixels."""
    rotation = euler_to_matrix(yaw, pitch, 0.0).astype(np.float32)
    base = model.neutral if vertices is None else vertices
    return (base @ rotation.T) * (SILHOUETTE_PX / 30.0)


def silhouette_pixels(points: np.ndarray) -> np.ndarray:
    """(N, 2) image pixels (y down) of (N, 2 or 3) posed points in silhouette pixels (y up)."""
    return np.stack((points[:, 0], -points[:, 1]), axis=1) + SILHOUETTE_PX / 2.0


def silhouette_outline(model: FaceModel, points: np.ndarray) -> np.ndarray:
    """Outer contour (M, 1, 2) of the rasterised face-area triangles of posed ``points``."""
    triangles = model.triangles[(model.triangles < model.face_area_vertex_count).all(axis=1)]
    uv = silhouette_pixels(points)
    mask = np.zeros((SILHOUETTE_PX, SILHOUETTE_PX), np.uint8)
    cv2.fillPoly(mask, list(np.round(uv[triangles] * 16).astype(np.int32)), 255, shift=4)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=cv2.contourArea)


def face_width_cm(model: FaceModel) -> float:
    """The neutral distance in x between ICT's static jaw vertices 0 and 16 (the outline
    distances' unit)."""
    jaw = model.neutral[np.asarray(model.landmarks68)[[0, 16]]]
    return float(jaw[1, 0] - jaw[0, 0])


def outline_distance(outline: np.ndarray, points: np.ndarray, face_width_px: float) -> np.ndarray:
    """Distance of each posed point's projection to ``outline``, % of the face width."""
    return np.array([abs(cv2.pointPolygonTest(outline, (float(u), float(v)), True))
                     for u, v in silhouette_pixels(points)]) / face_width_px * 100.0


def jaw_outline_distances(model: FaceModel, candidates: np.ndarray, anchors: np.ndarray,
                          radius: float) -> np.ndarray:
    """(68, C) the largest distance (% of the face width) from the outline of the point that
    cheek landmark ``k``'s curve through candidate ``c`` gives on the far side of the neutral
    face at :data:`OUTLINE_POSES` (0 for the chin curves 7-9, which the neck hides; inf where
    ``c`` is further than ``radius`` from the anchor, or in rows 17-67).

    The contour landmark's meaning (DESIGN.md): on a turned face it lies on the outline. A
    curve moved to a height whose row cannot reach the outline at 60 degrees of yaw (the rows at
    eye height stop at the eye's rim) would give it another meaning; the fit excludes it.
    """
    mesh = contour.SliceMesh.of(model)
    width_px = face_width_cm(model) * SILHOUETTE_PX / 30.0
    views = []  # (yaw, posed xy, the face centre's xy, outline)
    for yaw, pitch in OUTLINE_POSES:
        points = posed_for_outline(model, yaw, pitch)
        views.append((yaw, points[:, :2], points[mesh.centre_ids, :2].mean(axis=0),
                      silhouette_outline(model, points)))
    distances = np.full((N_LANDMARKS, len(candidates)), np.inf)
    for k, c, side, ids, weights in candidate_curves(mesh, candidates, anchors, radius):
        if k in contour.CHIN_LANDMARKS:
            distances[k, c] = 0.0
            continue
        far = [view for view in views if (view[0] > 0) == (side > 0)]  # yaw > 0 turns x > 0 away
        distances[k, c] = max(float(outline_distance(
            outline, curve_choice(xy[None], centre[None], ids, weights, False, side), width_px)[0])
            for _, xy, centre, outline in far)
    return distances
