"""REP-155 output pieces without a node process: ids, the messages of one face, the crops, the FACS
table, and the per-face publishers' life cycle over thousands of ids (real rclpy, in-process)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from face_expr_ros.core import face_crops
from face_expr_ros.core.emotions import EMOTIONS
from face_expr_ros.core.facs import FACS_UNITS, action_units, facs_markdown


REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(155)


@pytest.fixture(scope="module")
def rep155(hri_env):
    from face_expr_ros.ros import rep155 as module

    return module


@pytest.fixture
def header(rep155):
    from std_msgs.msg import Header

    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = 42, 7
    return h


def make_face(face_id: str, box, names, emotion=None, coefficients=None):
    from face_expr_ros.core.reconstruct import Face

    x0, y0, x1, y1 = box
    landmarks = np.column_stack((RNG.uniform(x0, x1, 68), RNG.uniform(y0, y1, 68)))
    return Face(id=face_id, box=np.array(box, float), score=0.87, names=tuple(names),
                coefficients=RNG.uniform(0, 1, len(names)) if coefficients is None else coefficients,
                selected=np.array([0]), identity=np.zeros(3), rotation=np.eye(3),
                translation=np.array([(x0 + x1) / 2, (y0 + y1) / 2]), scale=4.0,
                landmarks=landmarks, model=None, emotion=emotion)


# ---- ids ------------------------------------------------------------------------------------------

def test_published_ids_are_identifiers_starting_with_a_letter():
    """The tracker's ids are what every output publishes: REP-155 ids (a letter first)."""
    from face_expr_ros.core.tracking import Tracker

    tracker = Tracker(min_hits=1)
    boxes = np.array([[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(150)])
    ids = [a.track_id for a in tracker.update(boxes, 0.0)]
    assert len(set(ids)) == len(ids) == 150
    for track_id in ids:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", track_id), track_id

def test_roi_is_the_face_expression_roi_normalised(rep155, header):
    from face_expr_ros.ros.convert import box_to_roi

    for box in ((10.3, 20.7, 110.2, 140.9), (-15.0, -4.0, 60.0, 50.0), (600.5, 400.0, 700.0, 520.0)):
        msg = rep155.normalized_roi(header, box, (640, 480), 0.73)
        roi = box_to_roi(box, (640, 480))
        assert msg.header == header and msg.c == pytest.approx(0.73)
        assert (msg.xmin, msg.ymin) == pytest.approx((roi.x_offset / 640, roi.y_offset / 480))
        assert (msg.xmax, msg.ymax) == pytest.approx(((roi.x_offset + roi.width) / 640,
                                                      (roi.y_offset + roi.height) / 480))
        assert 0.0 <= msg.xmin < msg.xmax <= 1.0 and 0.0 <= msg.ymin < msg.ymax <= 1.0


def test_landmarks_are_normalised_in_message_order_with_unmeasured_pupils(rep155, header):
    from hri_msgs.msg import FacialLandmarks

    points = np.column_stack((RNG.uniform(-5, 645, 68), RNG.uniform(-5, 485, 68)))
    msg = rep155.facial_landmarks(header, points, (640, 480), 0.9)
    assert len(msg.landmarks) == 70 and (msg.width, msg.height) == (640, 480)
    got = np.array([[p.x, p.y] for p in msg.landmarks])
    np.testing.assert_allclose(got[:68], np.clip(points / [640, 480], 0, 1), atol=1e-6)
    # hri_msgs' codes are the iBUG indices: a few spot checks of the order
    assert FacialLandmarks.MENTON == 8 and FacialLandmarks.RIGHT_EYE_OUTSIDE == 36
    assert FacialLandmarks.LEFT_EYE_OUTSIDE == 45 and FacialLandmarks.MOUTH_INNER_LEFT == 64
    np.testing.assert_allclose(got[FacialLandmarks.RIGHT_PUPIL],
                               np.clip(points[36:42].mean(0) / [640, 480], 0, 1), atol=1e-6)
    np.testing.assert_allclose(got[FacialLandmarks.LEFT_PUPIL],
                               np.clip(points[42:48].mean(0) / [640, 480], 0, 1), atol=1e-6)
    c = np.array([p.c for p in msg.landmarks])
    assert np.allclose(c[:68], 0.9) and np.all(c[68:] == 0.0)


def test_facs_follow_the_documented_table(rep155, header, face_model):
    names = face_model.expression_names
    coefficients = RNG.uniform(0, 1, len(names))
    msg = rep155.facial_action_units(header, names, coefficients, 0.8)
    assert len(msg.intensity) == 99 and len(msg.confidence) == 99
    value = dict(zip(names, coefficients))
    estimated = set()
    for unit in FACS_UNITS:
        picked = [value[t] for t in unit.templates]
        expected = max(picked) if unit.combine == "max" else float(np.mean(picked))
        assert msg.intensity[unit.code] == pytest.approx(expected, abs=1e-6), unit.name
        assert msg.confidence[unit.code] == pytest.approx(0.8)
        estimated.add(unit.code)
    others = [i for i in range(99) if i not in estimated]
    assert all(msg.intensity[i] == 0.0 and msg.confidence[i] == 0.0 for i in others)
    from hri_msgs.msg import FacialActionUnits as F

    assert (F.INNER_BROW_RAISER, F.LIP_CORNER_PULLER, F.MOUTH_STRETCH, F.BLINK) == (1, 12, 27, 45)


def test_facs_table_covers_templates_of_the_model_and_is_the_documented_one(face_model):
    templates = [t for u in FACS_UNITS for t in u.templates]
    assert set(templates) <= set(face_model.expression_names)
    assert len(templates) == len(set(templates)), "a template feeds two action units"
    assert all(1 <= len(u.templates) <= 2 for u in FACS_UNITS)
    assert facs_markdown() in (REPO / "docs" / "node.md").read_text(), (
        "docs/node.md's FACS table is out of date: paste core.facs.facs_markdown()")
    with pytest.raises(ValueError, match="lack the FACS templates"):
        action_units(("jawOpen",), np.zeros(1))
    with pytest.raises(ValueError, match="coefficients for"):
        action_units(face_model.expression_names, np.zeros(3))


def test_expression_only_with_an_emotion_head(rep155, header):
    assert rep155.expression(header, None) is None
    p = np.array([0.05, 0.1, 0.05, 0.6, 0.1, 0.05, 0.05])
    msg = rep155.expression(header, p)
    assert msg.expression == EMOTIONS[3] == "angry" and msg.confidence == pytest.approx(0.6)
    # valence/arousal: the circumplex positions weighted by the probabilities (anger: -, +)
    from face_expr_ros.core.emotions import CIRCUMPLEX

    expected = sum(pi * np.array(CIRCUMPLEX[e]) for pi, e in zip(p, EMOTIONS))
    assert (msg.valence, msg.arousal) == pytest.approx(tuple(expected), abs=1e-6)
    assert msg.valence < 0 < msg.arousal and msg.header == header
    happy = rep155.expression(header, np.eye(7)[EMOTIONS.index("happy")])
    assert happy.valence > 0 and happy.arousal > 0 and happy.confidence == pytest.approx(1.0)
    from hri_msgs.msg import Expression

    words = {v for k, v in vars(Expression).items() if k.isupper() and isinstance(v, str)}
    assert set(EMOTIONS) <= words
    with pytest.raises(ValueError, match="7 finite probabilities"):
        rep155.expression(header, np.ones(3))


# ---- crops -------------------------------------------------------------------------------------------

def test_padded_crop_scales_centres_and_zero_pads():
    rgb = np.full((100, 200, 3), 200, np.uint8)
    image, affine = face_crops.padded_crop(rgb, (50, 10, 40, 80), (64, 64))  # tall region
    assert image.shape == (64, 64, 3)
    # 40x80 scaled by 0.8 -> 32x64, centred: columns 16..47 hold the region, the rest is zero
    assert np.all(image[:, :15] == 0) and np.all(image[:, 49:] == 0)
    assert np.all(image[2:-2, 18:46] == 200)
    centre = affine @ np.array([50 + 20 - 0.5, 10 + 40 - 0.5, 1.0])
    np.testing.assert_allclose(centre, [31.5, 31.5], atol=1e-9)
    # a region partly outside the image: the outside part is black, never wrapped
    image, _ = face_crops.padded_crop(rgb, (180, 60, 40, 40), (32, 32))
    assert np.all(image[:, 20:] == 0) and image[8:24, 2:12].min() == 200


def test_aligned_crop_makes_the_eyes_horizontal():
    rgb = RNG.integers(0, 255, (240, 320, 3), np.uint8)
    landmarks = np.column_stack((RNG.uniform(100, 200, 68), RNG.uniform(80, 180, 68)))
    landmarks[36:42] = [120, 100] + RNG.normal(0, 1, (6, 2))
    landmarks[42:48] = [180, 130] + RNG.normal(0, 1, (6, 2))  # tilted by about 26.6 degrees
    assert face_crops.eye_roll_deg(landmarks) == pytest.approx(26.6, abs=2)
    image, affine = face_crops.aligned_crop(rgb, (100, 70, 100, 100), landmarks, (128, 128))
    right, left = face_crops.eye_centres(landmarks)
    r, l = affine @ np.append(right, 1.0), affine @ np.append(left, 1.0)
    assert abs(r[1] - l[1]) < 1e-6 and l[0] > r[0]
    assert image.shape == (128, 128, 3)


# ---- publishers over thousands of ids -----------------------------------------------------------

def test_per_face_publishers_follow_the_tracker_and_do_not_grow(rep155, header, face_model):
    from conftest import rclpy_node

    names = face_model.expression_names
    rgb = np.zeros((120, 160, 3), np.uint8)
    with rclpy_node("rep155_churn") as (node, _):
        baseline = len(list(node.publishers))
        out = rep155.Rep155Output(node)
        counts = []
        for i in range(1, 2001):  # one face at a time, each frame a new id, the previous dropped
            face = make_face(f"f{i}", (40, 30, 100, 90), names)
            out.publish(header, rgb, [face], [f"f{i - 1}"] if i > 1 else [])
            counts.append(len(list(node.publishers)) - baseline)
            assert out.face_ids == [f"f{i}"]
        # the tracked list's publisher + the six of the one live face, at every frame
        assert set(counts) == {7}
        unconfirmed = make_face("", (40, 30, 100, 90), names)
        out.publish(header, rgb, [unconfirmed], ["f2000"])
        assert out.face_ids == [] and len(list(node.publishers)) - baseline == 1
        out.close()
        assert len(list(node.publishers)) == baseline


def test_a_face_with_an_emotion_gets_an_expression_and_one_without_none(rep155, header,
                                                                         face_model):
    """The node's path for weights with an emotion head (Face.emotion set), through real DDS."""
    from hri_msgs.msg import Expression, IdsList

    from conftest import rclpy_node

    names = face_model.expression_names
    rgb = np.zeros((120, 160, 3), np.uint8)
    emotion = np.array([0.1, 0.7, 0.05, 0.05, 0.04, 0.03, 0.03])
    with rclpy_node("rep155_expression") as (node, executor):
        out = rep155.Rep155Output(node)
        got = {"f1": [], "f2": []}
        tracked = []
        for face_id in got:
            node.create_subscription(Expression, f"/humans/faces/{face_id}/expression",
                                     got[face_id].append, 5)
        node.create_subscription(IdsList, "/humans/faces/tracked", tracked.append, 5)
        faces = [make_face("f1", (10, 10, 60, 60), names, emotion=emotion),
                 make_face("f2", (80, 10, 130, 60), names)]
        end = time.monotonic() + 20
        while not (got["f1"] and tracked) and time.monotonic() < end:
            out.publish(header, rgb, faces, [])  # publishers are created at the first frame
            for _ in range(10):
                executor.spin_once(timeout_sec=0.05)
        assert got["f1"], "no expression received"
        msg = got["f1"][-1]
        assert msg.expression == "happy" and msg.confidence == pytest.approx(0.7)
        assert msg.header == header
        assert got["f2"] == [] and list(tracked[-1].ids) == ["f1", "f2"]
        out.close()
