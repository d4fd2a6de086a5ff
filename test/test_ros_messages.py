"""face_expr_msgs over real DDS, and the message contract of DESIGN.md ("Messages").

The publishers run in a subprocess (this file run as a script), so messages really go through
Fast DDS between two processes, on the loopback, in this run's own ROS_DOMAIN_ID (conftest.ros_env).
"""
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import rclpy_node

REPO = Path(__file__).resolve().parents[1]
MSG_DIR = REPO / "face_expr_msgs" / "msg"
TIMEOUT_S = 30.0

# The contract (DESIGN.md, "Messages"): (type, name) in order.
EXPECTED_FIELDS = {
    "FaceExpression": [
        ("std_msgs/Header", "header"),
        ("string", "id"),
        ("float32", "confidence"),
        ("sensor_msgs/RegionOfInterest", "roi"),
        ("string[]", "names"),
        ("float32[]", "coefficients"),
        ("uint16[]", "selected"),
        ("float32[]", "identity"),
        ("geometry_msgs/Pose", "head_pose"),
        ("float32[]", "landmarks"),
    ],
    "FaceExpressionArray": [
        ("std_msgs/Header", "header"),
        ("FaceExpression[]", "faces"),
    ],
}

# .msg primitive type -> the name rosidl's Python classes report in get_fields_and_field_types().
_ROSIDL_PRIMITIVES = {
    "bool": "boolean", "byte": "octet", "char": "uint8", "float32": "float", "float64": "double",
    "int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32",
    "uint32": "uint32", "int64": "int64", "uint64": "uint64", "string": "string",
}


def parse_msg_file(path: Path) -> list[tuple[str, str]]:
    """(type, name) of every field of a .msg file, in order (comments and blank lines dropped)."""
    fields = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            parts = line.split()
            assert len(parts) == 2, f"{path.name}: unexpected line {line!r} (constants/defaults?)"
            fields.append((parts[0], parts[1]))
    return fields


def rosidl_type(msg_type: str, package: str = "face_expr_msgs") -> str:
    """The type string get_fields_and_field_types() reports for a .msg field type."""
    if msg_type.endswith("[]"):
        return f"sequence<{rosidl_type(msg_type[:-2], package)}>"
    if msg_type in _ROSIDL_PRIMITIVES:
        return _ROSIDL_PRIMITIVES[msg_type]
    return msg_type if "/" in msg_type else f"{package}/{msg_type}"


# ---- the messages both processes build ------------------------------------------------------------

N_NAMES, N_IDENTITY, N_LANDMARKS = 53, 100, 68


def expected_faces_message():
    """A FaceExpressionArray with 2 faces and every field set to a distinct, non-default value."""
    from face_expr_msgs.msg import FaceExpression, FaceExpressionArray

    msg = FaceExpressionArray()
    msg.header.stamp.sec = 1_700_000_000
    msg.header.stamp.nanosec = 123_456_789
    msg.header.frame_id = "camera_color_optical_frame"
    for k in range(2):
        face = FaceExpression()
        face.header = msg.header
        face.id = f"face{k + 7}"
        face.confidence = 0.875 - 0.25 * k
        face.roi.x_offset, face.roi.y_offset = 100 + 200 * k, 50 + k
        face.roi.width, face.roi.height = 120 - 30 * k, 140 - 30 * k
        face.roi.do_rectify = True
        face.names = [f"template{j:02d}_{'LR'[j % 2]}" for j in range(N_NAMES)]
        face.coefficients = [((j * 37 + k * 11) % 100) / 100.0 for j in range(N_NAMES)]
        face.selected = [j for j in range(N_NAMES) if face.coefficients[j] >= 0.5]
        face.identity = [math.sin(j + k) * 2.5 for j in range(N_IDENTITY)]
        p, q = face.head_pose.position, face.head_pose.orientation
        p.x, p.y, p.z = 0.05 * (k + 1), -0.02, 0.8 + 0.1 * k
        q.x, q.y, q.z, q.w = 0.5, -0.5, 0.5, -0.5 if k else 0.5
        face.landmarks = [300.0 + 0.25 * j + 17.5 * k for j in range(2 * N_LANDMARKS)]
        msg.faces.append(face)
    return msg


def expected_tf_message():
    """A TFMessage as tf2_ros.TransformBroadcaster would send for faces 7 and 8."""
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    msg = TFMessage()
    for k in range(2):
        t = TransformStamped()
        t.header.stamp.sec, t.header.stamp.nanosec = 1_700_000_000, 123_456_789
        t.header.frame_id = "camera_color_optical_frame"
        t.child_frame_id = f"face_face{k + 7}"
        t.transform.translation.x, t.transform.translation.z = 0.05 * k, 0.8
        t.transform.rotation.x, t.transform.rotation.w = math.sqrt(0.5), math.sqrt(0.5)
        msg.transforms.append(t)
    return msg


def qos_for(kind: str):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    if kind == "tf":  # what tf2_ros.TransformBroadcaster / TransformListener use for /tf
        return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


TOPICS = {"faces": ("faces/expression", expected_faces_message), "tf": ("/tf", expected_tf_message)}


def message_type(kind: str):
    return type(TOPICS[kind][1]())


def first_difference(a, b, path="msg"):
    """Where two ROS messages (or values) differ, or None when equal field by field."""
    if hasattr(type(a), "get_fields_and_field_types"):
        if type(a) is not type(b):
            return f"{path}: type {type(a).__name__} != {type(b).__name__}"
        for name in type(a).get_fields_and_field_types():
            diff = first_difference(getattr(a, name), getattr(b, name), f"{path}.{name}")
            if diff:
                return diff
        return None
    if isinstance(a, (list, tuple)) or hasattr(a, "typecode") or hasattr(a, "dtype"):
        a, b = list(a), list(b)
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


# ---- publisher process ---------------------------------------------------------------------------

def publish_forever(kind: str) -> None:
    """Publish the expected message of ``kind`` every 0.2 s once a subscriber matched (max 60 s)."""
    import rclpy

    topic, build = TOPICS[kind]
    rclpy.init()
    node = rclpy.create_node(f"test_publisher_{kind}")
    pub = node.create_publisher(message_type(kind), topic, qos_for(kind))
    msg = build()
    end = time.monotonic() + 60.0
    try:
        while time.monotonic() < end:
            if pub.get_subscription_count() > 0:
                pub.publish(msg)
            time.sleep(0.2)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# ---- tests ----------------------------------------------------------------------------------------

@pytest.fixture()
def ros_node(ros_env):
    """A node in its own rclpy context and executor (the publisher is another process)."""
    with rclpy_node("test_subscriber") as pair:
        yield pair


def receive_from_subprocess(ros_node, kind: str):
    """Subscribe to ``kind``'s topic, start the publisher process, return the first message."""
    node, executor = ros_node
    topic, _ = TOPICS[kind]
    received = []
    node.create_subscription(message_type(kind), topic, received.append, qos_for(kind))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, __file__, kind], stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy())
        try:
            end = time.monotonic() + TIMEOUT_S
            while not received and time.monotonic() < end and proc.poll() is None:
                executor.spin_once(timeout_sec=0.1)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            output = log.read().decode(errors="replace")
    assert received, (
        f"nothing received on {topic} within {TIMEOUT_S:.0f} s (publisher exit code {proc.returncode}, "
        f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')}); publisher output:\n{output[-3000:]}")
    return received[0]


def test_face_expression_array_crosses_processes(ros_node):
    msg = receive_from_subprocess(ros_node, "faces")
    expected = expected_faces_message()
    assert len(msg.faces) == 2
    assert len(msg.faces[0].names) == N_NAMES and len(msg.faces[0].landmarks) == 2 * N_LANDMARKS
    assert first_difference(msg, expected) is None, first_difference(msg, expected)
    assert msg == expected


def test_tf_message_on_tf_with_tf2_qos(ros_node):
    msg = receive_from_subprocess(ros_node, "tf")
    expected = expected_tf_message()
    assert [t.child_frame_id for t in msg.transforms] == ["face_face7", "face_face8"]
    assert first_difference(msg, expected) is None, first_difference(msg, expected)


@pytest.mark.parametrize("name", sorted(EXPECTED_FIELDS))
def test_msg_files_match_design(name):
    assert parse_msg_file(MSG_DIR / f"{name}.msg") == EXPECTED_FIELDS[name]


def test_msg_dir_holds_only_the_designed_messages():
    assert sorted(p.stem for p in MSG_DIR.glob("*.msg")) == sorted(EXPECTED_FIELDS)


@pytest.mark.parametrize("name", sorted(EXPECTED_FIELDS))
def test_generated_classes_match_msg_files(ros_env, name):
    import face_expr_msgs.msg

    cls = getattr(face_expr_msgs.msg, name)
    fields = parse_msg_file(MSG_DIR / f"{name}.msg")
    assert list(cls.get_fields_and_field_types().items()) == [(n, rosidl_type(t)) for t, n in fields], (
        "the installed face_expr_msgs differs from face_expr_msgs/msg: rebuild (bash .ci/setup_venv.sh)")


if __name__ == "__main__":  # the publisher process of receive_from_subprocess
    publish_forever(sys.argv[1])
