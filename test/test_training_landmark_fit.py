"""The feature landmarks' vertices and the jaw curves' anchors re-chosen against labels
(training.landmark_fit) and the tables the package uses (core.feature_landmarks)."""
from __future__ import annotations

import numpy as np
import pytest

from face_expr_ros.core import feature_landmarks
from face_expr_ros.core.camera import euler_to_matrix
from face_expr_ros.core.contour import build_contour_curves
from face_expr_ros.core.facemodel import FaceModel
from face_expr_ros.core.feature_landmarks import feature_landmark_vertices, jaw_anchor_vertices
from face_expr_ros.core.projection import LandmarkProjector
from face_expr_ros.core.reconstruct import SELLION
from face_expr_ros.training.augmentation import FLIP_PERMUTATION_68
from face_expr_ros.training.landmark_fit import (candidate_errors, candidate_vertices,
                                                  jaw_candidate_errors, jaw_outline_distances,
                                                  mirror_vertices, projected_jaw,
                                                  projected_vertices, select_vertices)


def _symmetric_cloud(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A mirror-symmetric point cloud (pairs at +-x and points on x = 0) and 68 'landmark'
    vertices on it: a partner pair at mirrored vertices, midline landmarks on the midline."""
    rng = np.random.default_rng(seed)
    half = rng.uniform([0.2, -5, -1], [5, 5, 1], size=(300, 3))
    midline = np.column_stack([np.zeros(60), rng.uniform(-5, 5, 60), rng.uniform(-1, 1, 60)])
    points = np.concatenate([half, half * [-1, 1, 1], midline])
    landmarks = np.zeros(68, np.int64)
    for k in range(68):
        partner = FLIP_PERMUTATION_68[k]
        if partner == k:
            landmarks[k] = 600 + k % 60
        elif k < partner:
            landmarks[k], landmarks[partner] = k, 300 + k
    return points, landmarks


def test_mirror_vertices_pairs_each_point_with_its_reflection():
    points, _ = _symmetric_cloud()
    mirror, distance = mirror_vertices(points)
    np.testing.assert_array_equal(mirror[:300], np.arange(300, 600))
    np.testing.assert_array_equal(mirror[300:600], np.arange(300))
    np.testing.assert_array_equal(mirror[600:], np.arange(600, 660))
    assert distance.max() < 1e-9


def test_candidate_errors_are_the_mean_normalised_distance():
    labels = np.zeros((2, 68, 2))
    labels[:, 36], labels[:, 45] = (0, 0), (10, 0)  # inter-ocular distance 10 on both faces
    projected = np.zeros((2, 3, 2))
    projected[0, 1], projected[1, 1] = (3, 4), (0, 0)  # candidate 1: 5 px, then 0 px from 0
    errors = candidate_errors(projected, labels)
    assert errors.shape == (68, 3)
    assert errors[0, 1] == pytest.approx(0.25)  # (0.5 + 0) / 2 for a label at the origin
    assert errors[0, 0] == 0.0 and errors[45, 0] == pytest.approx(1.0)


def test_select_vertices_picks_the_least_error_with_its_mirror_partner():
    points, landmarks = _symmetric_cloud()
    candidates = np.arange(len(points))
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    # every landmark's error: distance to a 'true' vertex near its own; the true vertices are
    # a mirror-symmetric choice, and one side's errors are noisier than the other's
    mirror, _ = mirror_vertices(points)
    truth = landmarks.copy()
    for k in range(17, 68):
        partner = FLIP_PERMUTATION_68[k]
        if k < partner:
            near = np.argsort(distance[landmarks[k], :300])[1]  # a neighbour on the same side
            truth[k], truth[partner] = near, mirror[near]
        elif partner == k:
            on_mid = 600 + np.argsort(distance[landmarks[k], 600:])[1]
            truth[k] = on_mid
    errors = distance[truth]  # (68, V): 0 at the true vertex
    errors[FLIP_PERMUTATION_68[36]] += np.random.default_rng(1).uniform(0, 0.01, len(points))
    radius = 10.0
    chosen = select_vertices(errors, candidates, landmarks, points, radius, midline=1e-6,
                             keep=(SELLION,))
    np.testing.assert_array_equal(chosen[:17], landmarks[:17])  # the jaw is not touched
    assert chosen[SELLION] == landmarks[SELLION]  # kept
    for k in range(17, 68):
        if k != SELLION:
            assert chosen[k] == truth[k], k
        if FLIP_PERMUTATION_68[k] != k:
            assert chosen[FLIP_PERMUTATION_68[k]] == mirror[chosen[k]]
        else:
            assert points[chosen[k], 0] == 0.0  # midline landmarks stay on the midline


def test_select_vertices_stays_within_the_radius_and_checks_shapes():
    points, landmarks = _symmetric_cloud()
    candidates = np.arange(len(points))
    far = np.ones((68, len(points)))
    far[:, 0] = 0.0  # vertex 0 is best for everyone, but far from most landmarks
    chosen = select_vertices(far, candidates, landmarks, points, radius=1e-6, midline=1e-6)
    np.testing.assert_array_equal(chosen, landmarks)  # only their own vertices are near enough
    with pytest.raises(ValueError, match=r"errors must be \(68, 660\)"):
        select_vertices(far[:, :10], candidates, landmarks, points, 1.0, 1.0)


def test_projected_vertices_are_where_the_projector_puts_the_landmarks(face_model):
    rng = np.random.default_rng(3)
    n, k = 4, 40
    identity = rng.normal(size=(n, k)).astype(np.float32)
    expression = rng.uniform(0, 0.6, (n, face_model.n_expressions)).astype(np.float32)
    rotation = np.stack([euler_to_matrix(rng.uniform(-40, 40), rng.uniform(-20, 20),
                                         rng.uniform(-10, 10)) for _ in range(n)])
    translation = np.column_stack([rng.uniform(-5, 5, (n, 2)), np.zeros(n)])
    scale = rng.uniform(4, 6, n)
    vertices = feature_landmark_vertices(face_model)[17:]
    ours = projected_vertices(face_model, identity, expression, rotation, translation, scale,
                              vertices, 128)
    projector = LandmarkProjector(face_model, k)
    reference = projector.landmarks_np(identity, expression, rotation, translation, scale, 128)
    np.testing.assert_allclose(ours, reference[:, 17:], atol=1e-3)


def test_candidate_vertices_cover_every_feature_landmark_neighbourhood(face_model):
    own = np.asarray(face_model.landmarks68)
    ids = candidate_vertices(face_model.neutral, own, 0.3)
    assert set(own[17:]) <= set(ids)
    assert not set(own[:17]) & set(ids) - set(own[17:])  # the jaw vertices are not asked for
    assert np.all(np.diff(ids) > 0)


def test_the_shipped_table_belongs_to_the_shipped_model_and_is_symmetric(face_model):
    own = np.asarray(face_model.landmarks68, np.int64)
    table = np.asarray(feature_landmarks.FEATURE_VERTICES)
    assert table.shape == (51, 2)
    np.testing.assert_array_equal(table[:, 0], own[17:])  # fitted on this model's landmarks
    fitted = feature_landmark_vertices(face_model)
    np.testing.assert_array_equal(fitted[:17], own[:17])
    assert fitted[SELLION] == own[SELLION]  # the frames' origin stays ICT's vertex
    assert (fitted != own).sum() >= 10  # the table is in use, not a copy of ICT's
    neutral = face_model.neutral.astype(np.float64)
    scale = np.linalg.norm(neutral[own[36]] - neutral[own[45]])
    moved = np.linalg.norm(neutral[fitted] - neutral[own], axis=1)
    assert moved.max() <= 0.05 * scale + 1e-6  # within bench/fit_landmarks.py's default radius
    mirror, distance = mirror_vertices(neutral)
    for k in range(17, 68):
        partner = FLIP_PERMUTATION_68[k]
        if partner != k:
            assert fitted[partner] == mirror[fitted[k]], k
        else:
            assert abs(neutral[fitted[k], 0]) <= 0.02 * scale, k


def test_the_contour_curves_use_the_table_only_on_its_own_model(face_model):
    curves = build_contour_curves(face_model)
    np.testing.assert_array_equal(curves.landmark_vertex_ids, feature_landmark_vertices(face_model))
    other = FaceModel(**{**face_model.__dict__,
                         "landmarks68": np.roll(face_model.landmarks68, 1)})
    np.testing.assert_array_equal(feature_landmark_vertices(other), other.landmarks68)


# ---------------------------------------------------------------------------------------------
# The jaw contour curves' anchors
# ---------------------------------------------------------------------------------------------
def _random_faces(face_model, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"identity": rng.normal(size=(n, 40)).astype(np.float32),
            "expression": rng.uniform(0, 0.5, (n, face_model.n_expressions)).astype(np.float32),
            "rotation": np.stack([euler_to_matrix(rng.uniform(-40, 40), rng.uniform(-20, 20),
                                                  rng.uniform(-10, 10)) for _ in range(n)]),
            "translation": np.column_stack([rng.uniform(-5, 5, (n, 2)), np.zeros(n)]),
            "scale": rng.uniform(4, 6, n)}


def _face_area_projection(face_model, faces: dict) -> np.ndarray:
    area = np.arange(face_model.face_area_vertex_count)
    return projected_vertices(face_model, **faces, vertex_ids=area, input_size=128)


def test_projected_jaw_is_where_the_projector_puts_the_jaw(face_model):
    faces = _random_faces(face_model, 6, seed=4)
    curves = build_contour_curves(face_model)
    ours = projected_jaw(curves, _face_area_projection(face_model, faces))
    reference = LandmarkProjector(face_model, 40).landmarks_np(**faces, input_size=128)
    np.testing.assert_allclose(ours, reference[:, :17], atol=1e-3)


def test_jaw_candidate_errors_find_the_anchors_that_drew_the_labels(face_model):
    """Labels drawn by curves through other anchors (the shipped table's): the candidate errors
    are zero at those anchors, and the selection reaches zero error on every jaw landmark."""
    own = np.asarray(face_model.landmarks68, np.int64)
    truth = jaw_anchor_vertices(face_model)
    assert (truth != own[:17]).any()
    faces = _random_faces(face_model, 5, seed=5)
    projected = _face_area_projection(face_model, faces)
    labels = LandmarkProjector(face_model, 40).landmarks_np(**faces, input_size=128)
    labels[:, :17] = projected_jaw(build_contour_curves(face_model, anchor_vertex_ids=truth),
                                   projected)
    neutral = face_model.neutral.astype(np.float64)
    scale = float(np.linalg.norm(neutral[own[36]] - neutral[own[45]]))
    anchors68 = own.copy()
    anchors68[:17] = truth
    candidates = np.union1d(candidate_vertices(neutral, anchors68, 0.01 * scale,
                                               landmarks=range(17)), own[:17])
    radius = 0.1 * scale
    errors = jaw_candidate_errors(face_model, projected, labels, candidates, own[:17], radius)
    assert errors.shape == (68, len(candidates)) and np.isinf(errors[17:]).all()
    column = {int(v): c for c, v in enumerate(candidates)}
    for k in range(17):
        assert errors[k, column[int(truth[k])]] < 1e-4, k  # the true anchor explains the labels
    moved = [k for k in range(17) if truth[k] != own[k]]
    assert min(errors[k, column[int(own[k])]] for k in moved) > 1e-3  # ICT's anchors do not
    chosen = select_vertices(errors, candidates, own, neutral, radius, midline=1e-4 * scale,
                             keep=(), landmarks=range(17))
    np.testing.assert_array_equal(chosen[17:], own[17:])  # only the jaw is chosen
    assert max(errors[k, column[int(chosen[k])]] for k in range(17)) < 1e-4


def test_jaw_outline_distances_keep_the_shipped_rows_and_flag_others(face_model):
    own = np.asarray(face_model.landmarks68, np.int64)
    neutral = face_model.neutral.astype(np.float64)
    scale = float(np.linalg.norm(neutral[own[36]] - neutral[own[45]]))
    fitted = jaw_anchor_vertices(face_model)
    candidates = candidate_vertices(neutral, own, 0.1 * scale, landmarks=[0, 16, *range(2, 4)],
                                    limit=face_model.face_area_vertex_count)
    candidates = np.union1d(candidates, fitted)
    distances = jaw_outline_distances(face_model, candidates, own[:17], 0.1 * scale)
    column = {int(v): c for c, v in enumerate(candidates)}
    for k in (0, 2, 3, 16):
        assert distances[k, column[int(fitted[k])]] <= 1.5, k  # the fit's tolerance
    # a row at eye height moved down stops at the eye's rim, off the turned face's outline
    assert np.nanmax(np.where(np.isfinite(distances[16]), distances[16], np.nan)) > 2.0
    assert (distances[[7, 8, 9]][np.isfinite(distances[[7, 8, 9]])] == 0).all()  # chin: none


def test_the_shipped_jaw_anchors_are_symmetric_ordered_and_near_ict(face_model):
    own = np.asarray(face_model.landmarks68, np.int64)[:17]
    table = np.asarray(feature_landmarks.JAW_ANCHOR_VERTICES)
    assert table.shape == (17, 2)
    np.testing.assert_array_equal(table[:, 0], own)  # fitted on this model's jaw vertices
    fitted = jaw_anchor_vertices(face_model)
    assert (fitted != own).sum() >= 6  # the table is in use
    neutral = face_model.neutral.astype(np.float64)
    lm = np.asarray(face_model.landmarks68)
    scale = np.linalg.norm(neutral[lm[36]] - neutral[lm[45]])
    assert np.linalg.norm(neutral[fitted] - neutral[own], axis=1).max() <= 0.1 * scale + 1e-6
    mirror, _ = mirror_vertices(neutral)
    for k in range(8):
        assert fitted[16 - k] == mirror[fitted[k]], k
    assert abs(neutral[fitted[8], 0]) < 1e-3  # the chin's middle stays on the midline
    heights = neutral[fitted, 1]
    assert (np.diff(heights[:7]) < 0).all() and (np.diff(heights[10:]) > 0).all()  # rows apart
    other = FaceModel(**{**face_model.__dict__,
                         "landmarks68": np.roll(face_model.landmarks68, 1)})
    np.testing.assert_array_equal(jaw_anchor_vertices(other), other.landmarks68[:17])
