"""Face tracking (stable ids) and One-Euro smoothing (core.tracking)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from face_expr_ros.core.tracking import (OneEuroFilter, RotationFilter, Tracker, box_iou,
                                         smoothing_factor)

FPS = 30.0


def box(cx: float, cy: float, size: float = 100.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def ids_by_detection(assignments) -> list[str]:
    return [a.track_id for a in sorted(assignments, key=lambda a: a.detection_index)]


# ---------------------------------------------------------------------------------------------
# Tracker
# ---------------------------------------------------------------------------------------------
def test_box_iou_values():
    a = np.array([box(0, 0, 10)])
    b = np.array([box(0, 0, 10), box(5, 0, 10), box(100, 0, 10)])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_ids_stable_for_a_slowly_moving_box():
    tracker = Tracker(min_hits=2, max_missed=5)
    seen = set()
    for frame in range(100):
        (a,) = tracker.update(np.array([box(100 + 3 * frame, 200 + frame)]), frame / FPS)
        seen.add(a.track_id)
        assert a.detection_index == 0
        assert tracker.dropped_ids() == []
    assert seen == {"f1"}


def test_min_hits_confirms_after_n_frames():
    for min_hits in (1, 2, 4):
        tracker = Tracker(min_hits=min_hits)
        confirmed = [tracker.update(np.array([box(100, 100)]), f / FPS)[0].confirmed
                     for f in range(6)]
        assert confirmed == [f + 1 >= min_hits for f in range(6)], min_hits


def test_a_new_face_gets_a_new_id():
    tracker = Tracker()
    for frame in range(5):
        tracker.update(np.array([box(100, 100)]), frame / FPS)
    assignments = tracker.update(np.array([box(100, 100), box(400, 100)]), 5 / FPS)
    assert ids_by_detection(assignments) == ["f1", "f2"]
    assert [a.confirmed for a in assignments] == [True, False]
    # order of detections does not matter
    assignments = tracker.update(np.array([box(400, 100), box(100, 100)]), 6 / FPS)
    assert ids_by_detection(assignments) == ["f2", "f1"]
    assert all(a.confirmed for a in assignments)


def test_face_survives_max_missed_frames_then_is_dropped_and_returns_with_a_new_id():
    tracker = Tracker(min_hits=2, max_missed=3)
    t = 0
    for _ in range(5):
        tracker.update(np.array([box(100, 100)]), t / FPS)
        t += 1
    for _ in range(3):  # missed 3 frames: still tracked
        assert tracker.update(np.zeros((0, 4)), t / FPS) == []
        t += 1
        assert tracker.track_ids == ["f1"] and tracker.dropped_ids() == []
    (a,) = tracker.update(np.array([box(100, 100)]), t / FPS)  # back within max_missed
    assert a.track_id == "f1" and a.confirmed
    t += 1
    for missed in range(4):  # the 4th miss (> max_missed) drops it
        tracker.update(np.zeros((0, 4)), t / FPS)
        t += 1
    assert tracker.dropped_ids() == ["f1"] and tracker.track_ids == []
    tracker.update(np.zeros((0, 4)), t / FPS)
    assert tracker.dropped_ids() == []  # reported once
    (a,) = tracker.update(np.array([box(100, 100)]), (t + 1) / FPS)
    assert a.track_id == "f2" and not a.confirmed


def test_tentative_track_missing_a_frame_is_removed():
    tracker = Tracker(min_hits=3)
    tracker.update(np.array([box(100, 100)]), 0.0)
    tracker.update(np.zeros((0, 4)), 1 / FPS)
    assert tracker.dropped_ids() == ["f1"]
    (a,) = tracker.update(np.array([box(100, 100)]), 2 / FPS)
    assert a.track_id == "f2" and a.hits == 1


def test_crossing_faces_keep_their_ids():
    # two faces walk past each other horizontally, at different heights: boxes overlap a little
    tracker = Tracker(min_hits=1)
    for frame in range(60):
        left_to_right = box(100 + 8 * frame, 200)
        right_to_left = box(580 - 8 * frame, 270)
        boxes = np.array([right_to_left, left_to_right] if frame % 2 else [left_to_right,
                                                                           right_to_left])
        ids = ids_by_detection(tracker.update(boxes, frame / FPS))
        expected = ["f2", "f1"] if frame % 2 else ["f1", "f2"]
        assert ids == expected, f"frame {frame}: {ids}"
    assert tracker.dropped_ids() == []


def test_time_going_backwards_drops_all_tracks():
    tracker = Tracker(min_hits=1)
    tracker.update(np.array([box(100, 100)]), 10.0)
    (a,) = tracker.update(np.array([box(100, 100)]), 2.0)
    assert tracker.dropped_ids() == ["f1"] and a.track_id == "f2"


def test_configure_validates_and_applies():
    tracker = Tracker()
    tracker.configure(min_hits=3, max_missed=0, iou_threshold=0.5, beta=0.0, smoothing=False)
    assert (tracker.min_hits, tracker.max_missed, tracker.iou_threshold) == (3, 0, 0.5)
    assert tracker.smoothing_parameters.beta == 0.0
    for kwargs, words in (({"min_hits": 0}, "min_hits must be an integer >= 1"),
                          ({"min_hits": 2.5}, "min_hits must be an integer"),
                          ({"max_missed": -1}, "max_missed must be an integer >= 0"),
                          ({"iou_threshold": 0.0}, "iou_threshold must be a finite number > 0.0 "
                                                   "and <= 1.0"),
                          ({"iou_threshold": 1.5}, "iou_threshold"),
                          ({"min_cutoff": 0.0}, "min_cutoff must be a finite number > 0.0"),
                          ({"beta": float("nan")}, "beta must be a finite number >= 0.0"),
                          ({"smoothing": 1}, "smoothing must be true or false"),
                          ({"min_hitz": 2}, "unknown tracking parameter 'min_hitz'")):
        with pytest.raises(ValueError, match=words):
            tracker.configure(**kwargs)
    # all or nothing: a bad value leaves the good ones unapplied
    with pytest.raises(ValueError):
        tracker.configure(min_hits=5, max_missed=-3)
    assert tracker.min_hits == 3
    with pytest.raises(ValueError, match="iou_threshold"):
        Tracker(iou_threshold=2.0)


def test_update_rejects_bad_boxes():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Tracker().update(np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        Tracker().update(np.array([[0, 0, np.nan, 1]]), 0.0)


def test_smooth_per_id_and_switches():
    tracker = Tracker(min_hits=1)
    rng = np.random.default_rng(1)
    a, b = tracker.update(np.array([box(100, 100), box(400, 100)]), 0.0)
    r = Rotation.from_euler("y", 20, degrees=True).as_matrix()
    # first sample passes through unchanged, per id
    first_a = tracker.smooth(a.track_id, 0.0, np.full(53, 0.2), r, np.array([0, 0, 1.0]), 10.0)
    first_b = tracker.smooth(b.track_id, 0.0, np.full(53, 0.8), r, np.array([0, 0, 2.0]), 5.0)
    np.testing.assert_allclose(first_a.coefficients, 0.2)
    np.testing.assert_allclose(first_b.coefficients, 0.8)
    np.testing.assert_allclose(first_b.scale, 5.0)
    tracker.update(np.array([box(100, 100), box(400, 100)]), 1 / FPS)
    noisy = 0.2 + rng.normal(0, 0.05, 53)
    out = tracker.smooth(a.track_id, 1 / FPS, noisy, r, np.array([0, 0, 1.0]), 10.0)
    assert np.abs(out.coefficients - 0.2).max() < np.abs(noisy - 0.2).max()
    tracker.configure(smoothing=False)
    raw = tracker.smooth(a.track_id, 2 / FPS, noisy, r, np.array([0, 0, 1.0]), 10.0)
    np.testing.assert_array_equal(raw.coefficients, noisy)
    with pytest.raises(KeyError, match="'7' is not tracked"):
        tracker.smooth("7", 0.0, noisy, r, np.zeros(3), 1.0)


# ---------------------------------------------------------------------------------------------
# One-Euro filter
# ---------------------------------------------------------------------------------------------
def run_filter(f: OneEuroFilter, signal: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.array([f(x, t) for x, t in zip(signal, times)])


def test_constant_signal_stays_constant():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    times = np.arange(100) / FPS
    out = run_filter(f, np.tile([0.3, -2.0, 7.0], (100, 1)), times)
    np.testing.assert_allclose(out, np.tile([0.3, -2.0, 7.0], (100, 1)), atol=1e-12)


def test_noise_on_a_still_signal_is_reduced():
    """Measured at 30 fps, noise sd 0.02 on 53 coefficients, defaults (1 Hz, beta 0.5): about 9.6x
    less variance; an exponential filter at 1 Hz (beta 0) gives (2 - a) / a = 10.5x."""
    rng = np.random.default_rng(0)
    times = np.arange(600) / FPS
    noisy = 0.5 + rng.normal(0.0, 0.02, (600, 53))
    for beta, least in ((0.5, 8.0), (0.0, 10.0)):
        out = run_filter(OneEuroFilter(min_cutoff=1.0, beta=beta), noisy, times)
        ratio = noisy[60:].var(axis=0).mean() / out[60:].var(axis=0).mean()
        assert ratio > least, (beta, ratio)
        np.testing.assert_allclose(out[60:].mean(), 0.5, atol=0.005)  # no bias
    alpha = smoothing_factor(1.0, 1 / FPS)
    ratio = noisy[60:].var(axis=0).mean() / out[60:].var(axis=0).mean()
    assert ratio == pytest.approx((2 - alpha) / alpha, rel=0.1)


def test_step_is_followed_with_bounded_lag():
    times = np.arange(120) / FPS
    step = (times >= 2.0).astype(float)[:, None]
    lags = {}
    for beta in (0.0, 0.5):
        out = run_filter(OneEuroFilter(min_cutoff=1.0, beta=beta), step, times)[:, 0]
        assert np.all(out <= 1.0 + 1e-12) and np.all(np.diff(out) >= -1e-12)  # no overshoot
        lags[beta] = times[np.argmax(out >= 0.9)] - 2.0
    # a first-order low-pass at 1 Hz reaches 90 % after ln(10) tau = 0.37 s; beta shortens it
    assert 0.3 <= lags[0.0] <= 0.45
    assert lags[0.5] <= 0.15


def test_non_increasing_timestamps():
    f = OneEuroFilter(min_cutoff=1.0)
    f(np.array([0.0]), 1.0)
    after = f(np.array([1.0]), 1.1)
    np.testing.assert_array_equal(f(np.array([5.0]), 1.1), after)  # same stamp: ignored
    np.testing.assert_array_equal(f(np.array([5.0]), 0.5), [5.0])  # backwards: reset
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros(2), 2.0)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=-1.0)


def test_rotation_smoothing_returns_proper_rotations_and_follows():
    rng = np.random.default_rng(3)
    f = RotationFilter(min_cutoff=1.0, beta=0.5)
    truth = Rotation.from_euler("xyz", [10, 170, 5], degrees=True)  # near the q / -q flip
    errors_in, errors_out = [], []
    for frame in range(200):
        noise = Rotation.from_rotvec(rng.normal(0, np.radians(2.0), 3))
        measured = (noise * truth).as_matrix()
        out = f(measured, frame / FPS)
        np.testing.assert_allclose(out @ out.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(out) == pytest.approx(1.0, abs=1e-9)
        if frame >= 30:
            errors_in.append((Rotation.from_matrix(measured) * truth.inv()).magnitude())
            errors_out.append((Rotation.from_matrix(out) * truth.inv()).magnitude())
    assert np.mean(errors_out) < 0.5 * np.mean(errors_in)
    # a rotation whose quaternion changes sign between frames is not averaged towards zero
    g = RotationFilter(min_cutoff=1.0)
    a = Rotation.from_rotvec([0, np.radians(179), 0]).as_matrix()
    b = Rotation.from_rotvec([0, np.radians(-179), 0]).as_matrix()
    g(a, 0.0)
    out = g(b, 1 / FPS)
    angle = np.degrees((Rotation.from_matrix(out) * Rotation.from_matrix(a).inv()).magnitude())
    assert angle < 2.0


def test_known_ids_keep_their_track_whatever_the_overlap():
    tracker = Tracker(min_hits=2)
    for frame in range(3):
        tracker.update(np.array([box(100, 100), box(400, 100)]), frame / FPS)
    # face "f1" jumped far (followed by its landmarks): the known id keeps it, no IoU needed;
    # the other box is matched by IoU as before
    assignments = tracker.update(np.array([box(405, 100), box(250, 300)]), 3 / FPS,
                                 known_ids=[None, "f1"])
    assert ids_by_detection(assignments) == ["f2", "f1"]
    assert tracker.dropped_ids() == []
    with pytest.raises(ValueError, match="known_ids"):
        tracker.update(np.array([box(0, 0)]), 4 / FPS, known_ids=[None, None])
