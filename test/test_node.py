"""face_expr_node over real DDS: the node runs in a subprocess (``python -m face_expr_ros.ros.node``), the
test client (publishers of images, subscribers of every output, parameter and lifecycle clients) in
this process; loopback only, in this run's ROS_DOMAIN_ID (conftest.ros_env; the subprocess inherits
it). The packaged weights: the assertions are about the contract, not accuracy.

One node process per configuration (class-scoped fixtures, each in its own namespace); every wait
has a timeout and ends as soon as its condition holds.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import rclpy_node, skip_or_fail

FRAME_ID = "test_camera_optical_frame"
WIDTH, HEIGHT = 640, 480
FIRST_FRAME_TIMEOUT_S = 60.0  # start-up, first inference (torch warm-up) on a busy 2-core machine
FRAME_TIMEOUT_S = 30.0
MESH_TRIANGLES = 300
HELEN_IMAGE = "100032540_1"


# ---- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weights():
    """The packaged weights (trained: a random network's landmarks do not follow a face, so the
    tracking mode would follow its drift instead)."""
    from face_expr_ros.core.weights import PACKAGE_WEIGHTS

    return PACKAGE_WEIGHTS


@pytest.fixture(scope="module")
def face_frame(data_root):
    """(480, 640, 3) RGB: a 256x256 helen face pasted at x 200, y 100 on a grey frame."""
    bgr = cv2.imread(str(data_root / "helen_train" / "images" / f"{HELEN_IMAGE}.jpg"))
    if bgr is None:
        skip_or_fail(f"helen image {HELEN_IMAGE}.jpg missing under {data_root}")
    frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    frame[100:356, 200:456] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return frame


@pytest.fixture(scope="module")
def client(ros_env):
    """The test's node, in its own context and executor."""
    with rclpy_node("face_expr_test_client") as (node, executor):
        yield Client(node, executor)


class Client:
    def __init__(self, node, executor):
        self.node, self.executor = node, executor

    def spin_until(self, condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(condition())

    def call(self, srv_type, name: str, request, timeout: float = 15.0):
        cli = self.node.create_client(srv_type, name)
        try:
            assert cli.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            future = cli.call_async(request)
            assert self.spin_until(future.done, timeout), f"no answer from {name}"
            return future.result()
        finally:
            self.node.destroy_client(cli)


class NodeProcess:
    """face_expr_node in a subprocess; its log goes to a file that the tests read."""

    def __init__(self, namespace: str, parameters: dict, log_dir: Path):
        self.namespace = namespace
        self.log_path = log_dir / "node.log"
        args = [sys.executable, "-m", "face_expr_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}"]
        for name, value in parameters.items():
            args += ["-p", f"{name}:={value}"]
        env = dict(os.environ, ROS_LOG_DIR=str(log_dir), PYTHONUNBUFFERED="1",
                   RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Session:
    """Publishers and subscribers of one node's namespace, and the frames sent to it."""

    _next_stamp = 1000  # seconds; every frame of the run gets its own stamp

    def __init__(self, client: Client, node: NodeProcess, compressed: bool = False):
        from diagnostic_msgs.msg import DiagnosticArray
        from face_expr_msgs.msg import FaceExpressionArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        self.client, self.node = client, node
        ns = node.namespace
        n = client.node
        self.expressions, self.tf, self.meshes, self.debug, self.diagnostics = [], [], [], [], []
        self.image_type = CompressedImage if compressed else Image
        topic = f"{ns}/image/compressed" if compressed else f"{ns}/image"
        self.image_pub = n.create_publisher(self.image_type, topic, QoSProfile(
            depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.entities = [self.image_pub] + [
            n.create_subscription(FaceExpressionArray, f"{ns}/faces/expression",
                                  self.expressions.append, 50),
            n.create_subscription(TFMessage, "/tf", self.tf.append, QoSProfile(
                depth=100, reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE)),
            n.create_subscription(MarkerArray, f"{ns}/faces/mesh", self.meshes.append, 50),
            n.create_subscription(Image, f"{ns}/faces/debug_image", self.debug.append, 10),
            n.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50),
        ]
        ready = client.spin_until(
            lambda: (not node.alive()) or (self.image_pub.get_subscription_count() > 0
                                          and self.entities[1].get_publisher_count() > 0),
            FIRST_FRAME_TIMEOUT_S)
        assert ready and node.alive(), f"node not ready (exit code {node.proc.poll()}):\n" \
                                       f"{node.output()[-3000:]}"

    def close(self) -> None:
        for entity in self.entities:
            if hasattr(entity, "publish"):
                self.client.node.destroy_publisher(entity)
            else:
                self.client.node.destroy_subscription(entity)

    @classmethod
    def stamp(cls):
        from builtin_interfaces.msg import Time

        cls._next_stamp += 1
        return Time(sec=cls._next_stamp, nanosec=500)

    def message(self, rgb: np.ndarray):
        from std_msgs.msg import Header

        from face_expr_ros.ros.convert import rgb_to_image

        header = Header(stamp=self.stamp(), frame_id=FRAME_ID)
        if self.image_type.__name__ == "Image":
            return rgb_to_image(rgb, header)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return self.image_type(header=header, format="jpeg", data=jpeg.tobytes())

    def process(self, msg, timeout: float = FRAME_TIMEOUT_S):
        """Publish ``msg``; return the FaceExpressionArray stamped like it."""
        def answer():
            return next((m for m in self.expressions if m.header.stamp == msg.header.stamp), None)

        end = time.monotonic() + timeout
        while time.monotonic() < end and self.node.alive():
            self.image_pub.publish(msg)  # again after 10 s: a frame lost to discovery
            if self.client.spin_until(lambda: answer() is not None, min(10.0, end - time.monotonic())):
                return answer()
        raise AssertionError(f"no faces/expression for stamp {msg.header.stamp.sec} within "
                             f"{timeout:.0f} s (node alive: {self.node.alive()}); node log:\n"
                             f"{self.node.output()[-3000:]}")

    def send(self, msg) -> None:
        self.image_pub.publish(msg)
        self.client.spin_until(lambda: False, 0.3)  # lets the worker finish each bad message

    def diagnostic_values(self, condition, timeout: float = 10.0) -> dict:
        """The newest of this node's diagnostics values that satisfy ``condition``."""
        name = f"{self.node.namespace}/face_expr_node: face expression pipeline"

        def newest():
            for array in reversed(self.diagnostics):
                for status in array.status:
                    if status.name == name:
                        values = {kv.key: kv.value for kv in status.values}
                        values["level"] = status.level
                        if condition(values):
                            return values
            return None

        assert self.client.spin_until(lambda: newest() is not None, timeout), (
            f"no diagnostics of {name} satisfying the condition; last: "
            f"{self.diagnostics[-1] if self.diagnostics else None}")
        return newest()


def start_node(request, tmp_path_factory, client, namespace, parameters, compressed=False):
    node = NodeProcess(namespace, parameters, tmp_path_factory.mktemp(namespace.strip("/")))
    request.addfinalizer(node.stop)
    session = Session(client, node, compressed)
    request.addfinalizer(session.close)
    return session


def base_parameters(weights) -> dict:
    return {"weights_path": weights, "tracking.min_hits": 1, "tracking.max_missed": 1}


def auto_backend(device: str) -> str:
    """What backend=auto picks (core.backend): onnx on the CPU with the [onnx] extra, else torch."""
    import importlib.util

    extra = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx", "onnxscript"))
    return "onnx" if device == "cpu" and extra else "torch"


def check_face_message(array, sent, model_names):
    """The FaceExpressionArray contract for one face (DESIGN.md, Messages)."""
    assert array.header.stamp == sent.header.stamp and array.header.frame_id == FRAME_ID
    assert len(array.faces) == 1, f"expected one face, got {len(array.faces)}"
    face = array.faces[0]
    assert face.header.stamp == sent.header.stamp and face.header.frame_id == FRAME_ID
    assert face.id and 0.0 <= face.confidence <= 1.0
    assert list(face.names) == list(model_names) and len(face.names) == 53
    coefficients = np.asarray(face.coefficients)
    assert len(coefficients) == 53 and np.all((coefficients >= 0) & (coefficients <= 1))
    assert len(face.selected) >= 1 and max(face.selected) < 53
    landmarks = np.asarray(face.landmarks).reshape(-1, 2)
    assert landmarks.shape == (68, 2)
    assert np.all((landmarks >= 0) & (landmarks < [WIDTH, HEIGHT])), "landmarks outside the image"
    q = face.head_pose.orientation
    assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1.0) < 1e-6
    assert face.head_pose.position.z > 0  # in front of the camera
    roi = face.roi
    assert roi.x_offset + roi.width <= WIDTH and roi.y_offset + roi.height <= HEIGHT
    assert 150 <= roi.x_offset + roi.width / 2 <= 500  # around the pasted face (x 200..456)
    return face


# ---- raw images ------------------------------------------------------------------------------------

@pytest.fixture(scope="class")
def raw_session(request, tmp_path_factory, client, weights):
    return start_node(request, tmp_path_factory, client, "/raw", {
        **base_parameters(weights), "publish_mesh": "true", "mesh_max_triangles": MESH_TRIANGLES,
        "mesh_rate": 0.0, "publish_debug_image": "true"})


@pytest.mark.usefixtures("raw_session")
class TestRawImages:
    """image (sensor_msgs/Image) in; every output on; then bad messages, parameters, lifecycle."""

    @pytest.fixture()
    def session(self, raw_session):
        return raw_session

    def test_one_face_in_one_message_out_with_tf(self, session, face_frame, face_model):
        msg = session.message(face_frame)
        array = session.process(msg, FIRST_FRAME_TIMEOUT_S)
        face = check_face_message(array, msg, face_model.expression_names)

        def tf_of_face():
            for m in session.tf:
                for t in m.transforms:
                    if t.child_frame_id == f"face_{face.id}" and t.header.stamp == msg.header.stamp:
                        return m
            return None

        assert session.client.spin_until(lambda: tf_of_face() is not None, 5.0), "no face TF"
        children = {t.child_frame_id: t for t in tf_of_face().transforms}
        assert set(children) == {f"face_{face.id}", f"gaze_{face.id}"}
        for t in children.values():
            assert t.header.frame_id == FRAME_ID
        p = children[f"face_{face.id}"].transform.translation
        assert (p.x, p.y, p.z) == pytest.approx((face.head_pose.position.x,
                                                 face.head_pose.position.y,
                                                 face.head_pose.position.z))

    def test_ids_stay_over_a_slowly_moving_face(self, session, face_frame):
        ids = []
        for k in range(4):
            array = session.process(session.message(np.roll(face_frame, 2 * k, axis=1)))
            assert len(array.faces) == 1
            ids.append(array.faces[0].id)
        assert len(set(ids)) == 1, f"face ids changed while the face moved 2 px per frame: {ids}"

    def test_mesh_marker_and_debug_image(self, session, face_frame, face_model):
        from visualization_msgs.msg import Marker

        from face_expr_ros.core.render import region_triangles
        from face_expr_ros.ros.convert import decimate_mesh

        expected = len(decimate_mesh(face_model.neutral, region_triangles(face_model, "face"),
                                     MESH_TRIANGLES).triangles)
        msg = session.message(face_frame)
        face = session.process(msg).faces[0]

        def marker():
            for array in session.meshes:
                for m in array.markers:
                    if m.header.stamp == msg.header.stamp and m.action == Marker.ADD:
                        return m
            return None

        assert session.client.spin_until(lambda: marker() is not None, 5.0), "no mesh marker"
        m = marker()
        assert m.type == Marker.TRIANGLE_LIST and m.header.frame_id == FRAME_ID
        assert face.id.startswith("f") and m.id == int(face.id[1:]) and m.text == face.id
        assert len(m.points) == 3 * expected, (len(m.points) // 3, expected)
        assert session.client.spin_until(
            lambda: any(d.header.stamp == msg.header.stamp for d in session.debug), 5.0)
        debug = next(d for d in session.debug if d.header.stamp == msg.header.stamp)
        assert (debug.width, debug.height, debug.encoding) == (WIDTH, HEIGHT, "rgb8")
        assert debug.header.frame_id == FRAME_ID

    def test_no_face_gives_an_empty_array_and_deletes_the_mesh(self, session):
        from visualization_msgs.msg import Marker

        empty = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        for _ in range(3):  # tracking.max_missed = 1: the face's track is dropped on the 2nd
            array = session.process(session.message(empty))
            assert array.faces == [] and array.header.frame_id == FRAME_ID
        assert session.client.spin_until(lambda: any(
            m.action == Marker.DELETE for a in session.meshes for m in a.markers), 5.0), \
            "no DELETE marker for the face that left"

    def test_bad_messages_are_counted_and_the_node_goes_on(self, session, face_frame):
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        def image(encoding, width, height, step, data):
            return Image(header=Header(stamp=session.stamp(), frame_id=FRAME_ID), width=width,
                         height=height, encoding=encoding, step=step, data=bytes(data))

        before = session.diagnostic_values(lambda v: True)
        big = 8000
        bad = [
            image("16UC1", 4, 4, 8, 32),                       # 16-bit (depth) image
            image("yuv_unknown", 4, 4, 12, 48),                # unknown encoding
            image("rgb8", 4, 4, 12, 40),                       # data size != step * height
            image("rgb8", 0, 0, 0, 0),                         # zero size
            image("mono8", big, big, big, big * big),          # 64 Mpx > max_image_pixels
        ]
        for msg in bad:
            session.send(msg)
        # all counted before the next frame is sent: a frame sent while the 64 MB one is still in
        # transit would replace it in the subscription's keep-last-1 history
        expected = int(before["bad_messages"]) + len(bad)
        values = session.diagnostic_values(lambda v: int(v["bad_messages"]) >= expected, 30.0)
        assert int(values["bad_messages"]) == expected
        assert int(values["processing_errors"]) == 0
        array = session.process(session.message(face_frame))
        assert len(array.faces) == 1 and session.node.alive()
        log = session.node.output()
        for reason in ("unsupported image encoding '16UC1'", "unsupported image encoding "
                       "'yuv_unknown'", "expected step * height", "zero size", "exceeds max_pixels"):
            assert reason in log, f"{reason!r} not logged"

    def test_diagnostics_report_rates_latency_device(self, session):
        values = session.diagnostic_values(lambda v: v["latency_receive_p95_ms"] != "n/a"
                                           or int(v["frames_processed"]) > 0)
        for key in ("fps_in", "fps_out", "latency_receive_p50_ms", "latency_receive_p95_ms",
                    "latency_stamp_p50_ms", "latency_stamp_p95_ms", "dropped_frames",
                    "bad_messages", "device", "backend", "faces"):
            assert key in values
        assert values["device"] == "cpu" or values["device"].startswith("cuda")
        assert values["backend"] == auto_backend(values["device"])
        assert values["state"] == "active"

    def test_parameters_out_of_range_are_rejected(self, session, client):
        from rcl_interfaces.srv import GetParameters, SetParameters
        from rclpy.parameter import Parameter

        node = "/raw/face_expr_node"

        def set_one(name, value):
            request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
            return client.call(SetParameters, f"{node}/set_parameters", request).results[0]

        rejected = [("tracking.iou_threshold", 1.5), ("tracking.min_cutoff", 0.0),
                    ("image_reliability", "best_effort"), ("debug_image_mesh", "sparkles"),
                    ("weights_path", "/elsewhere.safetensors"), ("backend", "torch"),
                    ("backend", "tensorrt")]
        for name, value in rejected:
            result = set_one(name, value)
            assert not result.successful and result.reason, (name, value)
        assert "min_cutoff" in set_one("tracking.min_cutoff", 0.0).reason
        assert "deactivate" in set_one("image_reliability", "best_effort").reason
        assert set_one("detection_threshold", 0.4).successful
        got = client.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(
            names=["detection_threshold", "tracking.iou_threshold", "tracking.min_cutoff"]))
        assert [v.double_value for v in got.values] == [0.4, 0.3, 1.0]

    def test_lifecycle_deactivate_stops_activate_resumes(self, session, client, face_frame):
        from lifecycle_msgs.msg import State, Transition
        from lifecycle_msgs.srv import ChangeState, GetState

        node = "/raw/face_expr_node"
        state = client.call(GetState, f"{node}/get_state", GetState.Request()).current_state
        assert state.id == State.PRIMARY_STATE_ACTIVE
        assert client.call(ChangeState, f"{node}/change_state", ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_DEACTIVATE))).success
        msg = session.message(face_frame)
        session.image_pub.publish(msg)
        client.spin_until(lambda: False, 1.0)
        assert not any(m.header.stamp == msg.header.stamp for m in session.expressions)
        assert client.call(ChangeState, f"{node}/change_state", ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_ACTIVATE))).success
        assert client.spin_until(lambda: session.image_pub.get_subscription_count() > 0, 10.0)
        assert len(session.process(session.message(face_frame)).faces) == 1

    def test_incompatible_publisher_qos_is_reported_with_the_fix(self, session, client):
        from rclpy.event_handler import PublisherEventCallbacks
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        pub = client.node.create_publisher(Image, "/raw/image", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.BEST_EFFORT), event_callbacks=(
                PublisherEventCallbacks(incompatible_qos=lambda event: None)))
        try:
            assert client.spin_until(lambda: "incompatible QoS" in session.node.output(), 15.0), \
                session.node.output()[-2000:]
            report = next(line for line in session.node.output().splitlines()
                          if "incompatible QoS" in line)
            assert "/raw/image" in report and "RELIABILITY" in report
            assert "image_reliability:=best_effort" in report
            values = session.diagnostic_values(lambda v: int(v["incompatible_qos_events"]) > 0)
            assert values["level"] == b"\x01"  # WARN
        finally:
            client.node.destroy_publisher(pub)


# ---- compressed images -----------------------------------------------------------------------------

@pytest.fixture(scope="class")
def compressed_session(request, tmp_path_factory, client, weights):
    return start_node(request, tmp_path_factory, client, "/compressed", {
        **base_parameters(weights), "image_transport": "compressed"}, compressed=True)


class TestCompressedImages:
    """image/compressed (sensor_msgs/CompressedImage) in, by image_transport:=compressed."""

    @pytest.fixture()
    def session(self, compressed_session):
        return compressed_session

    def test_jpeg_in_one_face_out(self, session, face_frame, face_model):
        msg = session.message(face_frame)
        check_face_message(session.process(msg, FIRST_FRAME_TIMEOUT_S), msg,
                           face_model.expression_names)

    def test_large_jpeg_frames_decode_reduced_with_full_size_outputs(self, session, face_frame):
        """1280x960 with a 512 px face: followed, it is decoded at 1/2 (reduced_decode, the
        default), and the outputs stay in the full image's pixels."""
        big = cv2.resize(face_frame, (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_LINEAR)
        before = int(session.diagnostic_values(lambda v: True)["frames_decoded_reduced"])
        for _ in range(4):
            array = session.process(session.message(big))
            assert len(array.faces) == 1
            face = array.faces[0]
            roi = face.roi
            centre = (roi.x_offset + roi.width / 2, roi.y_offset + roi.height / 2)
            assert abs(centre[0] - 2 * 328) < 60 and abs(centre[1] - 2 * 228) < 80, centre
            landmarks = np.asarray(face.landmarks).reshape(-1, 2)
            assert np.ptp(landmarks[:, 0]) > 250, "landmarks in full-image pixels"
        values = session.diagnostic_values(
            lambda v: int(v["frames_decoded_reduced"]) >= before + 3, 30.0)
        assert int(values["frames_decoded_reduced"]) >= before + 3

    def test_corrupt_and_huge_jpegs_are_counted_and_the_node_goes_on(self, session, face_frame):
        from sensor_msgs.msg import CompressedImage
        from std_msgs.msg import Header

        good = session.message(face_frame).data
        ok, huge = cv2.imencode(".jpg", np.zeros((8000, 8000, 3), np.uint8))
        assert ok
        before = session.diagnostic_values(lambda v: True)
        bad = [bytes(good[: len(good) // 2]),                 # truncated JPEG
               b"\xff\xd8 this is not a jpeg \xff\xd9",        # corrupt JPEG
               b"",                                            # empty
               huge.tobytes()]                                 # 8000x8000: 64 Mpx
        for data in bad:
            session.send(CompressedImage(header=Header(stamp=session.stamp(), frame_id=FRAME_ID),
                                         format="jpeg", data=data))
        expected = int(before["bad_messages"]) + len(bad)
        values = session.diagnostic_values(lambda v: int(v["bad_messages"]) >= expected, 30.0)
        assert int(values["bad_messages"]) == expected
        assert len(session.process(session.message(face_frame)).faces) == 1
        log = session.node.output()
        for reason in ("truncated JPEG", "could not be decoded", "has no data", "exceeds max_pixels"):
            assert reason in log, f"{reason!r} not logged"


# ---- start-up errors -------------------------------------------------------------------------------

def test_missing_weights_stop_the_node_with_the_path_and_the_fix(ros_env, tmp_path):
    missing = tmp_path / "no_such_weights.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "face_expr_ros.ros.node", "--ros-args", "-r", "__ns:=/failing",
         "-p", f"weights_path:={missing}"], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, ROS_LOG_DIR=str(tmp_path)))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert str(missing) in output and "weights_path" in output and "face_expr train" in output


def test_out_of_range_start_parameter_is_refused(ros_env, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "face_expr_ros.ros.node", "--ros-args", "-r", "__ns:=/failing",
         "-p", "image_transport:=h264"], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, ROS_LOG_DIR=str(tmp_path)))
    assert proc.returncode != 0
    assert "image_transport must be one of raw, compressed" in proc.stdout + proc.stderr
