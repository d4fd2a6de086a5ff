"""Tracking mode (core.follow + Reconstructor(follow=True)) with the packaged weights, on frames
made from the bundled example image: faces followed by their landmarks, detection on a schedule."""
from __future__ import annotations

import numpy as np
import pytest

from face_expr_ros.core.align import DETECTOR_BOX_RULE, BoxRule, blend_framing, framing_of
from face_expr_ros.core.follow import (REFRAME_WEIGHT, FaceFollower, FollowedFace, best_matches,
                                       inside_fraction, predict_landmarks, presence)
from face_expr_ros.core.reconstruct import Reconstructor
from face_expr_ros.offline.examples import ASTRONAUT_FACE, astronaut

FPS = 30.0
SIZE = (480, 640)


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    x0, y0, x1, y1 = ASTRONAUT_FACE
    return np.ascontiguousarray(astronaut()[y0 - 20:y1 + 20, x0 - 20:x1 + 20])  # 210 px


def frame(head: np.ndarray, xs: list[int], y: int = 100) -> np.ndarray:
    """A grey frame with the head's left edge at each x of ``xs`` (cut at the frame's edges)."""
    out = np.full(SIZE + (3,), 90, np.uint8)
    h, w = head.shape[:2]
    for x in xs:
        a, b = max(x, 0), min(x + w, SIZE[1])
        if b > a:
            out[y:y + h, a:b] = head[:, a - x:b - x]
    return out


@pytest.fixture()
def follower_rec(face_model):
    return Reconstructor(face_model=face_model, device="cpu", backend="torch", follow=True,
                         detection_interval_s=0.5)


def run(rec: Reconstructor, frames, start: int = 0) -> list[tuple[list, bool]]:
    """(faces, detector ran) per frame, frame k at k / FPS."""
    out = []
    for k, image in enumerate(frames, start):
        faces = rec.reconstruct(image, k / FPS)
        out.append((faces, rec.timings.detected))
    return out


def test_detects_first_then_follows_and_redetects_on_schedule_keeping_the_id(follower_rec, head):
    frames = [frame(head, [60 + 6 * k]) for k in range(40)]  # 180 px/s to the right
    results = run(follower_rec, frames)
    detected = [k for k, (_, d) in enumerate(results) if d]
    assert detected[0] == 0
    assert detected == [0, 15, 30], "the first frame, then every 0.5 s (15 frames)"
    ids = {f.id for faces, _ in results[1:] for f in faces}
    assert ids == {"f1"}, "one id through the re-detections"
    for k, (faces, _) in enumerate(results[1:], 1):
        assert len(faces) == 1
        centre = faces[0].landmarks.mean(axis=0)
        assert abs(centre[0] - (60 + 6 * k + 105)) < 25, f"frame {k}: landmarks do not follow"


def test_a_new_face_is_found_at_the_next_detection(follower_rec, head):
    first = run(follower_rec, [frame(head, [20])] * 10)
    assert [f.id for f in first[-1][0]] == ["f1"]
    both = run(follower_rec, [frame(head, [20, 380])] * 12, start=10)
    waited = next(k for k, (faces, _) in enumerate(both) if len(faces) == 2)
    # found at the detection of frame 15 (5 frames on), confirmed on the next one (min_hits 2)
    assert waited == 6
    assert sorted(f.id for f in both[-1][0]) == ["f1", "f2"]
    assert not any(d for _, d in both[waited + 1:]), "no detection until the next scheduled one"


def test_a_face_replaced_by_background_is_lost_at_once(follower_rec, head):
    run(follower_rec, [frame(head, [200])] * 5)
    gone = run(follower_rec, [frame(head, [])] * 4, start=5)
    assert gone[0][0] == [], "presence (detector on the crop) falls: not followed into the wall"
    assert gone[1][1], "the frame after the loss is detected"
    back = run(follower_rec, [frame(head, [200])] * 3, start=9)
    assert [f.id for f in back[-1][0]] == ["f1"], "found again within max_missed: same id"


def test_a_face_leaving_the_frame_is_dropped(follower_rec, head):
    xs = [300 + 15 * k for k in range(30)]  # leaves on the right at 450 px/s
    results = run(follower_rec, [frame(head, [x]) for x in xs])
    last_seen = max(k for k, (faces, _) in enumerate(results) if faces)
    assert xs[last_seen] + 210 * (1 - 0.6) < 640 + 30, "dropped once less than 60 % is inside"
    assert all(not faces for faces, _ in results[last_seen + 1:])
    dropped_by = last_seen + 1 + 5 + 1  # max_missed frames later the tracker forgets the id
    assert not any(d for _, d in results[dropped_by + 1:]), "then only the schedule detects"


def test_still_image_mode_detects_every_image(face_model, head):
    rec = Reconstructor(face_model=face_model, device="cpu", backend="torch")
    for k in range(3):
        rec.reconstruct(frame(head, [100]), k / FPS)
        assert rec.timings.detected


def test_interval_zero_detects_every_frame(follower_rec, head):
    follower_rec.configure(detection_interval_s=0.0)
    results = run(follower_rec, [frame(head, [100 + 3 * k]) for k in range(5)])
    assert all(d for _, d in results)
    assert {f.id for faces, _ in results[1:] for f in faces} == {"f1"}


def test_prediction_moves_by_the_measured_velocity():
    landmarks = np.random.default_rng(0).uniform(100, 200, (68, 2))
    face = FollowedFace(landmarks, 1.0, np.array([30.0, -60.0]), 0.0, 0.9)
    np.testing.assert_allclose(predict_landmarks(face, 1.1), landmarks + [3.0, -6.0])
    follower = FaceFollower()
    follower.keep("f1", landmarks, 0.0, 0.9)
    follower.keep("f1", landmarks * 1.1 + 5, 0.1, 0.9)
    assert follower.faces["f1"].growth == pytest.approx(np.log(1.1) / 0.1)


def test_presence_prefers_the_network_head_and_checks_the_detection_place():
    class Det:
        def __init__(self, box, score):
            self.box, self.score = np.array(box, float), score

    def never():
        raise AssertionError("the detector must not run when the network has a presence head")

    assert presence(0.2, never) == 0.2
    expected = np.array([10, 10, 100, 100])
    assert presence(None, lambda: ([Det([12, 8, 98, 102], 0.9)], expected)) == 0.9
    assert presence(None, lambda: ([Det([200, 200, 300, 300], 0.9)], expected)) == 0.0
    assert presence(None, lambda: ([], expected)) == 0.0


def test_inside_fraction_and_settings_errors():
    assert inside_fraction(np.array([-50, 0, 50, 100]), 640, 480) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="detection_interval_s"):
        FaceFollower(detection_interval_s=-1)
    with pytest.raises(ValueError, match="presence_threshold"):
        FaceFollower(presence_threshold=1.5)


def test_deferred_detection_runs_after_the_frame_and_keeps_ids(face_model, head):
    rec = Reconstructor(face_model=face_model, device="cpu", backend="torch", follow=True,
                        detection_interval_s=0.5, defer_detection=True)
    seen, ran, detected = [], [], []
    for k in range(24):
        xs = [20] if k < 10 else [20, 380]  # a second face from frame 10
        faces = rec.reconstruct(frame(head, xs), k / FPS)
        detected.append(rec.timings.detected)
        seen.append(sorted(f.id for f in faces))
        ran.append(rec.detect_deferred())
    assert [k for k, d in enumerate(detected) if d] == [0], "no followed face yet: at once"
    assert [k for k, r in enumerate(ran) if r] == [15], "then deferred, every 0.5 s"
    assert seen[0] == [] and seen[1] == ["f1"], "confirmed on the 2nd frame (min_hits 2)"
    # the second face: detected after frame 15, followed from 16, confirmed at 17
    assert seen[16] == ["f1"] and seen[17] == ["f1", "f2"] and seen[-1] == ["f1", "f2"]
    framings = {i: f.framing for i, f in rec.follower.faces.items()}
    assert set(framings) == {"f1", "f2"} and None not in framings.values(), \
        "both keep the detector's framing, the one a deferred detection found too"


def test_refine_pass_only_where_the_crop_missed_the_face(face_model, head):
    follower = FaceFollower(refine_iou=0.95)
    landmarks = np.random.default_rng(1).uniform(100, 200, (68, 2))
    assert not follower.needs_refine(landmarks + 1.0, landmarks), "IoU 0.98: the crop was right"
    assert follower.needs_refine(landmarks + 10.0, landmarks), "IoU 0.82: framed again"
    assert FaceFollower(refine_iou=1.0).needs_refine(landmarks, landmarks), "1.0: every face"
    assert not FaceFollower(refine_iou=0.0).needs_refine(landmarks + 50, landmarks), "0.0: none"
    with pytest.raises(ValueError, match="refine_iou"):
        FaceFollower(refine_iou=1.5)
    # a still face is framed as predicted: one pass; a fast one (24 px a frame) needs the second
    counts = {}
    for name, step in (("still", 0), ("fast", 24)):
        rec = Reconstructor(face_model=face_model, device="cpu", backend="torch", follow=True,
                            refine_iou=0.95)
        results = run(rec, [frame(head, [60 + step * k]) for k in range(8)])
        assert all(len(faces) == 1 for faces, _ in results[1:])
        rec.reconstruct(frame(head, [60 + step * 8 + (step * 3 if step else 0)]), 8 / FPS)
        counts[name] = rec.timings.refined
    assert counts == {"still": 0, "fast": 1}, "a jump the motion model did not predict: refined"


def test_detection_in_its_thread_does_not_hold_frames_and_keeps_ids(face_model, head):
    rec = Reconstructor(face_model=face_model, device="cpu", backend="torch", follow=True,
                        detection_interval_s=0.5, defer_detection=True, detect_in_thread=True)
    try:
        seen, started = [], []
        for k in range(24):
            xs = [20] if k < 10 else [20, 380]  # a second face from frame 10
            faces = rec.reconstruct(frame(head, xs), k / FPS)
            seen.append(sorted(f.id for f in faces))
            started.append(rec.detect_deferred())
            if k == 15:
                assert rec._detect_thread.busy, "started in its thread, not run in the frame's"
                assert rec.wait_background_detection(), "its result is taken up"
                assert rec.deferred_timings.detected and rec.deferred_timings.detect > 0
        assert [k for k, s in enumerate(started) if s] == [15], "every 0.5 s, after the frame"
        assert seen[1] == ["f1"] and seen[16] == ["f1"] and seen[17] == ["f1", "f2"]
        assert seen[-1] == ["f1", "f2"], "ids kept through the background detection"
    finally:
        rec.close()


def test_detection_thread_runs_at_lower_priority_and_returns_results():
    import os
    import threading

    from face_expr_ros.core.detect_thread import DetectionThread

    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def detect(image):
        return [(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), image.shape)]

    worker = DetectionThread(detect, nice=5)
    try:
        assert worker.poll() is None and not worker.busy
        worker.submit(np.zeros((4, 6, 3), np.uint8), context="frame 7")
        with pytest.raises(RuntimeError, match="pending"):
            worker.submit(np.zeros((4, 6, 3), np.uint8))
        result = worker.poll(wait=True)
        assert result.context == "frame 7" and result.ms >= 0
        assert result.detections == [(min(caller + 5, 19), (4, 6, 3))]
        assert not worker.busy
    finally:
        worker.close()
    with pytest.raises(ValueError, match="nice"):
        DetectionThread(detect, nice=25)


def test_a_still_face_followed_gets_the_crop_and_landmarks_of_per_frame_detection(face_model, head):
    """Framing (core.follow): the followed crop keeps the detector's framing of the face, so a
    face that does not move gives exactly what detecting it again would; framed on its own
    landmark box instead, it drifts (0.3-0.6 px a point here)."""
    image = frame(head, [200])
    still = Reconstructor(face_model=face_model, device="cpu", backend="torch").reconstruct(image)[0]
    expected = framing_of(still.landmarks, DETECTOR_BOX_RULE.apply(still.box))
    assert (still.framing.scale, still.framing.dx, still.framing.dy) == pytest.approx(
        (expected.scale, expected.dx, expected.dy), abs=1e-12)
    for anchored in (True, False):
        rec = Reconstructor(face_model=face_model, device="cpu", backend="torch", follow=True,
                            detection_interval_s=0.5)
        errors = []
        for k in range(20):  # detections at frames 0 and 15
            if not anchored:
                for followed in rec.follower.faces.values():
                    followed.framing = None
            faces = rec.reconstruct(image, k / FPS)
            errors += [np.abs(f.landmarks - still.landmarks).mean() for f in faces]
        assert len(errors) == 19
        if anchored:
            kept = rec.follower.faces["f1"].framing
            assert (kept.scale, kept.dx, kept.dy) == pytest.approx(
                (still.framing.scale, still.framing.dx, still.framing.dy), abs=1e-9)
            assert max(errors) < 1e-3, errors
        else:
            assert min(errors[1:]) > 0.05, "without the framing the crops drift from the detector's"


def test_reframe_blends_a_followed_face_towards_a_new_detection():
    follower = FaceFollower()
    landmarks = np.random.default_rng(2).uniform(100, 200, (68, 2))
    old, new = BoxRule(1.0, 0.0, 0.1), BoxRule(1.2, 0.1, 0.0)
    follower.keep("f1", landmarks, 0.0, 0.9, old)
    assert follower.faces["f1"].framing == old
    follower.reframe("f1", new)
    assert follower.faces["f1"].framing == blend_framing(old, new, REFRAME_WEIGHT)
    follower.reframe("f9", new)  # not followed (any more): nothing to do
    follower.reframe(None, new)
    assert set(follower.faces) == {"f1"}
    follower.keep("f2", landmarks + 300, 0.0, 0.8)
    assert follower.faces["f2"].framing is None


def test_best_matches_pairs_each_box_with_its_most_overlapping_one():
    boxes = np.array([[0, 0, 10, 10], [100, 100, 120, 120], [50, 50, 60, 60]], float)
    others = np.array([[101, 101, 121, 121], [1, 0, 11, 10], [0, 0, 30, 30]], float)
    np.testing.assert_array_equal(best_matches(boxes, others, 0.5), [1, 0, -1])
    np.testing.assert_array_equal(best_matches(boxes, others[:0], 0.5), [-1, -1, -1])
    assert best_matches(boxes[:0], others, 0.5).shape == (0,)
