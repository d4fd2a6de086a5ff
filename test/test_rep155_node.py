"""face_expr_node's REP-155 output over real DDS, read the way pyhri/libhri read it: a listener that
follows /humans/faces/tracked and subscribes to each id's topics while the id is listed.

The node runs in a subprocess (loopback, this run's ROS_DOMAIN_ID) with the package's weights on a
frame with two faces, then on the same frame with the right face gone. Every field of every
REP-155 message is checked against the node's own FaceExpression of the same frame.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from face_expr_ros.core.emotions import EMOTIONS

from conftest import rclpy_node

FRAME_ID = "hri_test_camera_optical_frame"
NAMESPACE = "/hri_test"
WIDTH, HEIGHT = 640, 480
CROP_W, CROP_H = 96, 80  # not REP-155's default 128: the size parameters must be used
TIMEOUT_S = 90.0
PER_FACE = ("roi", "landmarks", "facs", "cropped", "aligned", "expression")


@pytest.fixture(scope="module")
def frames():
    from face_expr_ros.offline.examples import faces_frame

    two = faces_frame(WIDTH, HEIGHT, 2)
    one = two.copy()
    one[:, WIDTH // 2:] = 128  # the right face leaves; the left one stays where it was
    return two, one


class HriListener:
    """pyhri-like: the tracked list decides which per-face topics are subscribed."""

    def __init__(self, node):
        from face_expr_msgs.msg import FaceExpressionArray
        from hri_msgs.msg import IdsList
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from tf2_msgs.msg import TFMessage

        self.node = node
        self.tracked: list = []
        self.arrays: list = []
        self.tf: list = []
        self.per_face: dict[str, dict[str, list]] = {}
        self.subscriptions: dict[str, dict] = {}
        self.image_pub = node.create_publisher(Image, f"{NAMESPACE}/image", QoSProfile(
            depth=2, reliability=ReliabilityPolicy.RELIABLE))
        self.tracked_sub = node.create_subscription(IdsList, "/humans/faces/tracked",
                                                    self._on_tracked, 10)
        self.array_sub = node.create_subscription(FaceExpressionArray,
                                                  f"{NAMESPACE}/faces/expression",
                                                  self.arrays.append, 10)
        node.create_subscription(TFMessage, "/tf", self.tf.append, QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE))

    def _on_tracked(self, msg) -> None:
        self.tracked.append(msg)
        for face_id in msg.ids:
            if face_id not in self.subscriptions:
                self._subscribe(face_id)
        for face_id in list(self.subscriptions):
            if face_id not in msg.ids:  # pyhri drops a face that left the list
                for sub in self.subscriptions.pop(face_id).values():
                    self.node.destroy_subscription(sub)

    def _subscribe(self, face_id: str) -> None:
        from hri_msgs.msg import (Expression, FacialActionUnits, FacialLandmarks,
                                  NormalizedRegionOfInterest2D)
        from sensor_msgs.msg import Image

        types = {"roi": NormalizedRegionOfInterest2D, "landmarks": FacialLandmarks,
                 "facs": FacialActionUnits, "cropped": Image, "aligned": Image,
                 "expression": Expression}
        store = self.per_face.setdefault(face_id, {k: [] for k in types})
        self.subscriptions[face_id] = {
            name: self.node.create_subscription(kind, f"/humans/faces/{face_id}/{name}",
                                                store[name].append, 5)
            for name, kind in types.items()}

    def matched(self, face_id: str) -> bool:
        subs = self.subscriptions.get(face_id, {})
        return bool(subs) and all(s.get_publisher_count() > 0 for s in subs.values())


@pytest.fixture(scope="module")
def session(hri_env, tmp_path_factory):
    from face_expr_ros.ros.demo import NodeProcess

    parameters = {"backend": "torch", "tracking.min_hits": "1", "tracking.max_missed": "0",
                  "tracking.smoothing": "false", "humans.faces.width": str(CROP_W),
                  "humans.faces.height": str(CROP_H), "rep155": "true"}
    node = NodeProcess("face_expr_ros.ros.node", NAMESPACE, parameters,
                       log_dir=tmp_path_factory.mktemp("rep155_node"), name="face_expr_node")
    with rclpy_node("hri_listener") as (client, executor):
        listener = HriListener(client)

        def spin_until(condition, timeout=TIMEOUT_S) -> bool:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if condition():
                    return True
                if not node.running():
                    pytest.fail(f"the node exited:\n{node.log_tail(60)}")
                executor.spin_once(timeout_sec=0.05)
            return bool(condition())

        ready = spin_until(lambda: listener.image_pub.get_subscription_count() > 0
                           and listener.tracked_sub.get_publisher_count() > 0)
        assert ready, f"node not ready:\n{node.log_tail(60)}"
        yield listener, spin_until, node
    node.stop()


_stamp = [100]


def send(listener, rgb):
    """Publish ``rgb`` with a new stamp; returns the header sent."""
    from std_msgs.msg import Header

    from face_expr_ros.ros.convert import rgb_to_image

    _stamp[0] += 1
    header = Header(frame_id=FRAME_ID)
    header.stamp.sec = _stamp[0]
    listener.image_pub.publish(rgb_to_image(rgb, header))
    return header


def of_stamp(messages, header):
    return [m for m in messages if m.header.stamp == header.stamp]


def answer(listener, spin_until, rgb, n_faces):
    """Send ``rgb`` until its FaceExpressionArray and tracked list arrive (a frame may be dropped
    while the node warms up); returns (header, array, tracked)."""
    for _ in range(5):
        header = send(listener, rgb)
        if spin_until(lambda: of_stamp(listener.arrays, header) and
                      of_stamp(listener.tracked, header), timeout=TIMEOUT_S / 3):
            array = of_stamp(listener.arrays, header)[0]
            tracked = of_stamp(listener.tracked, header)[0]
            assert len(array.faces) == n_faces, [f.id for f in array.faces]
            return header, array, tracked
    pytest.fail("no answer to the frame")


def expected_facs(face_msg):
    from face_expr_ros.core.facs import action_units

    codes, values = action_units(list(face_msg.names), np.asarray(face_msg.coefficients))
    return dict(zip(codes.tolist(), values.tolist()))


def check_face(listener, face_msg, header):
    """Every field of the face's REP-155 messages against its FaceExpression."""
    face_id = face_msg.id
    got = {name: of_stamp(listener.per_face[face_id][name], header) for name in PER_FACE}
    roi = got["roi"][0]
    r = face_msg.roi
    assert roi.header == header
    assert (roi.xmin, roi.ymin, roi.xmax, roi.ymax) == pytest.approx(
        (r.x_offset / WIDTH, r.y_offset / HEIGHT, (r.x_offset + r.width) / WIDTH,
         (r.y_offset + r.height) / HEIGHT), abs=1e-6)
    assert roi.c == pytest.approx(face_msg.confidence, abs=1e-6)

    landmarks = got["landmarks"][0]
    assert landmarks.header == header and (landmarks.width, landmarks.height) == (WIDTH, HEIGHT)
    points = np.asarray(face_msg.landmarks, np.float64).reshape(68, 2)
    xy = np.array([[p.x, p.y] for p in landmarks.landmarks])
    np.testing.assert_allclose(xy[:68], np.clip(points / [WIDTH, HEIGHT], 0, 1), atol=1e-5)
    np.testing.assert_allclose(xy[68], np.clip(points[36:42].mean(0) / [WIDTH, HEIGHT], 0, 1),
                               atol=1e-5)
    np.testing.assert_allclose(xy[69], np.clip(points[42:48].mean(0) / [WIDTH, HEIGHT], 0, 1),
                               atol=1e-5)
    c = np.array([p.c for p in landmarks.landmarks])
    assert np.allclose(c[:68], face_msg.confidence, atol=1e-6) and np.all(c[68:] == 0)

    facs = got["facs"][0]
    assert facs.header == header
    table = expected_facs(face_msg)
    for code in range(99):
        if code in table:
            assert facs.intensity[code] == pytest.approx(table[code], abs=1e-5), code
            assert facs.confidence[code] == pytest.approx(face_msg.confidence, abs=1e-6)
        else:
            assert facs.intensity[code] == 0.0 and facs.confidence[code] == 0.0, code

    for name in ("cropped", "aligned"):
        image = got[name][0]
        assert image.header == header and image.encoding == "rgb8"
        assert (image.width, image.height, image.step) == (CROP_W, CROP_H, 3 * CROP_W)
        pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(CROP_H, CROP_W, 3)
        assert pixels.max() > 0, f"{name} is black"
    # the shipped weights have an emotion head: one Expression per face and frame
    (expression,) = got["expression"]
    assert expression.header == header
    assert expression.expression in EMOTIONS, expression.expression
    assert 1.0 / len(EMOTIONS) - 1e-6 <= expression.confidence <= 1.0  # the argmax's probability
    assert -1.0 <= expression.valence <= 1.0 and -1.0 <= expression.arousal <= 1.0


def tf_children(listener, header):
    return {t.child_frame_id for m in listener.tf for t in m.transforms
            if t.header.stamp == header.stamp and t.header.frame_id == FRAME_ID}


def test_two_faces_then_one_leaves(session, frames):
    listener, spin_until, node = session
    two, one = frames
    _, array, tracked = answer(listener, spin_until, two, 2)
    ids = sorted(f.id for f in array.faces)
    assert sorted(tracked.ids) == ids and all(i[0].isalpha() for i in ids), ids
    # the listener subscribed on the tracked list; once matched, the next frame is seen in full
    assert spin_until(lambda: all(listener.matched(i) for i in ids)), \
        f"per-face topics not matched: {listener.subscriptions}"
    header, array, tracked = answer(listener, spin_until, two, 2)
    assert sorted(f.id for f in array.faces) == ids and sorted(tracked.ids) == ids
    assert spin_until(lambda: all(of_stamp(listener.per_face[i][n], header)
                                  for i in ids for n in PER_FACE))
    for face_msg in array.faces:
        check_face(listener, face_msg, header)
    assert spin_until(lambda: tf_children(listener, header) >= {
        *(f"face_{i}" for i in ids), *(f"gaze_{i}" for i in ids)}), tf_children(listener, header)

    # the right face leaves: its id leaves the tracked list and its topics are destroyed
    header, array, tracked = answer(listener, spin_until, one, 1)
    (stays,) = [f.id for f in array.faces]
    (gone,) = [i for i in ids if i != stays]
    assert list(tracked.ids) == [stays]
    assert gone not in listener.subscriptions  # the listener let go as pyhri does
    assert spin_until(lambda: all(of_stamp(listener.per_face[stays][n], header)
                                  for n in PER_FACE))
    check_face(listener, array.faces[0], header)
    assert {f"face_{stays}", f"gaze_{stays}"} <= tf_children(listener, header)
    assert f"face_{gone}" not in tf_children(listener, header)
    topics = lambda: {name for name, _ in listener.node.get_topic_names_and_types()}  # noqa: E731
    assert spin_until(lambda: not any(t.startswith(f"/humans/faces/{gone}/") for t in topics()),
                      timeout=30.0), sorted(t for t in topics() if gone in t)
    assert f"/humans/faces/{stays}/roi" in topics()
