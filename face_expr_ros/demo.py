"""``face_expr demo``: the node end to end on example frames, through real ROS 2 topics.

What it does (docs/demo.md):

1. picks a DDS domain (``$ROS_DOMAIN_ID``, else a random one in 1..100) and keeps DDS on the
   loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``);
2. starts ``face_expr_node`` as a subprocess in the namespace ``/demo`` (one still image per frame,
   so tracking confirms a face at once and does not smooth across unrelated frames);
3. publishes example frames (made at run time from ``skimage.data.astronaut()``, NASA, public
   domain: frontal, shifted, rotated 15 degrees, scaled 0.5x, two faces, no face) as
   sensor_msgs/Image on ``/demo/image`` with CameraInfo on ``/demo/camera_info``, one at a time;
4. waits for the FaceExpressionArray of each frame on ``/demo/faces/expression`` (matched by stamp),
   prints a table (faces, ids, top-3 expressions, yaw/pitch/roll from the published head pose,
   publish -> receive latency) and writes overlay PNGs re-synthesised from the message alone
   (expression coefficients, selected templates, identity, head pose, landmarks);
5. stops the node (SIGINT, then SIGKILL after a grace period) and exits 0 when every frame got an
   answer, 1 otherwise (with the node's log tail when the node failed).

ROS is imported inside the functions: ``face_expr --help`` stays instant and ROS-free.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NAMESPACE = "/demo"
FRAME_ID = "camera_color_optical_frame"
WIDTH, HEIGHT = 640, 480
HFOV_DEG = 60.0
EXPECTED_FACES = {"frontal": 1, "shifted": 1, "rotated_15": 1, "scaled_0.5": 1, "two_faces": 2,
                  "no_face": 0}
"""Frames in publishing order and the number of faces in each."""
# One still image per frame: confirm faces at once, no smoothing across unrelated frames.
NODE_PARAMETERS = {"tracking.min_hits": "1", "tracking.smoothing": "false"}
# Where the astronaut's face is in skimage.data.astronaut() (512x512), x0, y0, x1, y1 and centre.
ASTRONAUT_HEAD = (70, 0, 370, 300)  # a square crop with the head and shoulders
# A tighter square around the face: MediaPipe's short-range BlazeFace (bench/mediapipe_node.py)
# misses three heads side by side at 640x480 with the crop above, and finds them with this one.
ASTRONAUT_FACE = (140, 40, 310, 210)
ASTRONAUT_FACE_CENTRE = (222.5, 119.0)
MESH_RGB = (110, 170, 255)  # light blue: the re-synthesised mesh stands out from skin


class DemoError(RuntimeError):
    """The demo cannot run or did not finish (the message says why and what to do)."""


# ---------------------------------------------------------------------------------------------
# Example frames (made at run time: nothing to download, nothing bundled but scikit-image's image)
# ---------------------------------------------------------------------------------------------
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: ``skimage.data.astronaut()`` (NASA, public domain)."""
    try:
        from skimage.data import astronaut as load
    except ImportError as err:
        raise DemoError(f"the example image comes from scikit-image ({err}); "
                        "pip install scikit-image") from None
    return np.ascontiguousarray(load())


def _paste(canvas: np.ndarray, image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``image`` warped by the 2x3 ``affine`` over ``canvas`` (same size as canvas)."""
    import cv2

    h, w = canvas.shape[:2]
    warped = cv2.warpAffine(image, affine, (w, h), flags=cv2.INTER_AREA
                            if abs(np.linalg.det(affine[:, :2])) < 1 else cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones(image.shape[:2], np.float32), affine, (w, h))[..., None]
    return np.clip(canvas * (1.0 - mask) + warped * mask + 0.5, 0, 255).astype(np.uint8)


def _background(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A heavily blurred, stretched copy of ``image``: a background without any face.

    The blur grows with the frame (sigma 25 px at 640 px): a detector that downscales a 1280x720
    frame to 640x360 found the astronaut's face in a sigma-25 blur of it."""
    import cv2

    sigma = 25.0 * max(1.0, max(width, height) / 640.0)
    return cv2.GaussianBlur(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
                            (0, 0), sigma)


def example_frames(width: int = WIDTH, height: int = HEIGHT) -> dict[str, np.ndarray]:
    """The demo's frames, name -> (height, width, 3) uint8 RGB, in :data:`EXPECTED_FACES` order."""
    import cv2

    a = astronaut()
    bg = _background(a, width, height)
    s = height / a.shape[0]
    base = np.array([[s, 0.0, (width - a.shape[1] * s) / 2.0], [0.0, s, 0.0]])
    shifted = base + np.array([[0.0, 0.0, 0.18 * width], [0.0, 0.0, 0.08 * height]])
    face = base @ np.array([*ASTRONAUT_FACE_CENTRE, 1.0])
    # +15 deg in OpenCV's convention = counter-clockwise as the viewer sees it = roll +15 (core)
    turn = np.vstack((cv2.getRotationMatrix2D((float(face[0]), float(face[1])), 15.0, 1.0),
                      [0.0, 0.0, 1.0]))
    rotated = (turn @ np.vstack((base, [0.0, 0.0, 1.0])))[:2]
    # half the size of the frontal frame, centred
    half = np.array([[0.5 * s, 0.0, (width - 0.5 * s * a.shape[1]) / 2.0],
                     [0.0, 0.5 * s, (height - 0.5 * s * a.shape[0]) / 2.0]])
    frames = {
        "frontal": _paste(bg, a, base),
        "shifted": _paste(bg, a, shifted),
        "rotated_15": _paste(bg, a, rotated),
        "scaled_0.5": _paste(bg, a, half),
        "two_faces": faces_frame(width, height, 2, a, bg),
        # the lower right of the photo (suit, helmet): real texture, no face
        "no_face": cv2.resize(a[260:, 200:], (width, height), interpolation=cv2.INTER_LINEAR),
    }
    return frames


def faces_frame(width: int, height: int, n_faces: int, image: np.ndarray | None = None,
                background: np.ndarray | None = None,
                crop: tuple[int, int, int, int] = ASTRONAUT_HEAD) -> np.ndarray:
    """``n_faces`` astronaut heads side by side (every other one mirrored), blurred background.

    Used by the demo (two faces) and bench/latency.py (1 and 3 faces at 640x480 and 1280x720).
    """
    a = astronaut() if image is None else image
    canvas = _background(a, width, height) if background is None else background
    x0, y0, x1, y1 = crop
    head = np.ascontiguousarray(a[y0:y1, x0:x1])
    side = min(0.9 * width / n_faces, 0.75 * height)
    k = side / head.shape[0]
    gap = (width - n_faces * side) / (n_faces + 1)
    for i in range(n_faces):
        tile = head if i % 2 == 0 else np.ascontiguousarray(head[:, ::-1])
        left = gap + i * (side + gap)
        canvas = _paste(canvas, tile, np.array([[k, 0.0, left], [0.0, k, (height - side) / 2.0]]))
    return canvas


def camera_matrix(width: int, height: int, hfov_deg: float = HFOV_DEG) -> np.ndarray:
    """K of the (pretend) camera the frames come from: square pixels, centred, ``hfov_deg``
    (the node's K without CameraInfo, :func:`core.camera.default_camera_matrix`)."""
    from .core.camera import default_camera_matrix

    return default_camera_matrix(width, height, hfov_deg)


# ---------------------------------------------------------------------------------------------
# Reading the message back
# ---------------------------------------------------------------------------------------------
def pose_to_core_rotation(orientation: Any) -> np.ndarray:
    """Core rotation R from the published ``face_<id>`` orientation (geometry_msgs quaternion).

    The node publishes ``Q = diag(1,-1,-1) R F`` (F = camera.FACE_AXES_IN_MODEL), so
    ``R = diag(1,-1,-1) Q F^T``.
    """
    from .core.camera import CORE_TO_OPTICAL, FACE_AXES_IN_MODEL, quaternion_to_matrix

    q = quaternion_to_matrix(np.array([orientation.x, orientation.y, orientation.z, orientation.w]))
    return CORE_TO_OPTICAL @ q @ FACE_AXES_IN_MODEL.T


def head_pose_euler(face_msg: Any) -> np.ndarray:
    """(yaw, pitch, roll) degrees, core convention (docs/conventions.md), of one FaceExpression."""
    from .core.camera import matrix_to_euler

    return matrix_to_euler(pose_to_core_rotation(face_msg.head_pose.orientation))


def top_expressions(face_msg: Any, k: int = 3) -> list[tuple[str, float]]:
    values = np.asarray(face_msg.coefficients, np.float64)
    order = np.argsort(-values, kind="stable")[:k]
    return [(face_msg.names[i], float(values[i])) for i in order]


def overlay(image: np.ndarray, faces: list[Any], K: np.ndarray, model: Any, title: str = "",
            region: str = "face") -> np.ndarray:
    """The frame with, per face, the mesh re-synthesised from the message and its landmarks.

    Everything comes from the FaceExpression: the mesh is ``synthesize(coefficients, selected,
    identity)``, rotated by the head pose, scaled by ``f * 0.01 m / z`` pixels per cm (weak
    perspective, as the node computes the depth) and placed so that the sellion lands on the
    projection of ``head_pose.position`` through ``K``. Landmarks (green) and box are the message's.
    """
    import cv2

    from .core.render import camera_to_pixels, draw_landmarks, region_triangles, render_mesh
    from .core.synthesis import synthesize

    out = np.ascontiguousarray(image).copy()
    triangles = region_triangles(model, region)
    f = 0.5 * (K[0, 0] + K[1, 1])
    sellion = int(model.landmarks68[27])
    for msg in faces:
        R = pose_to_core_rotation(msg.head_pose.orientation)
        p = msg.head_pose.position
        u, v = K[0, 0] * p.x / p.z + K[0, 2], K[1, 1] * p.y / p.z + K[1, 2]
        scale = f * 0.01 / p.z  # pixels per cm
        vertices = synthesize(model, np.asarray(msg.coefficients, np.float32),
                              np.asarray(msg.selected, np.int64),
                              np.asarray(msg.identity, np.float32)).astype(np.float64)
        posed = scale * (vertices - vertices[sellion]) @ R.T  # core camera frame, pixels, y up
        px = camera_to_pixels(posed, (u, v))  # u + x, v - y, z
        out = render_mesh(px, triangles, out, color=MESH_RGB, alpha=0.5)
        roi = msg.roi
        cv2.rectangle(out, (roi.x_offset, roi.y_offset),
                      (roi.x_offset + roi.width, roi.y_offset + roi.height), (255, 200, 0), 2)
        cv2.putText(out, f"id {msg.id}", (roi.x_offset, max(14, roi.y_offset - 5)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 200, 0), 1, cv2.LINE_AA)
        landmarks = np.asarray(msg.landmarks, np.float64).reshape(-1, 2)
        out = draw_landmarks(out, landmarks, radius=max(1.2, roi.width / 70))
    if title:
        (tw, th), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        cv2.rectangle(out, (0, 0), (tw + 14, th + 14), (0, 0, 0), -1)
        cv2.putText(out, title, (7, th + 7), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


# ---------------------------------------------------------------------------------------------
# The node as a subprocess
# ---------------------------------------------------------------------------------------------
def ros_environment(domain_id: int | None = None) -> int:
    """Keep DDS on the loopback in our own domain (in os.environ, inherited by subprocesses).

    ``domain_id``: explicit; else ``$ROS_DOMAIN_ID`` if set; else a random id in 1..100.
    """
    if domain_id is None:
        text = os.environ.get("ROS_DOMAIN_ID", "").strip()
        domain_id = int(text) if text.isdigit() else random.randint(1, 100)
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return domain_id


class NodeProcess:
    """A node started as ``python -m MODULE --ros-args ...`` (or ``python SCRIPT.py ...``); its
    output goes to a log file.

    Args:
        module: e.g. ``face_expr_ros.node``, or the path of a ``.py`` script.
        namespace: ``__ns`` remap.
        parameters: name -> value text for ``-p name:=value``.
        prefix: command prefix (e.g. ``["taskset", "-c", "0"]``); env: extra environment.
    """

    def __init__(self, module: str, namespace: str, parameters: dict[str, str] | None = None,
                 prefix: list[str] | None = None, env: dict[str, str] | None = None,
                 log_dir: str | os.PathLike | None = None, name: str = "node"):
        self.name = name
        target = [str(module)] if str(module).endswith(".py") else ["-m", module]
        self.command = [*(prefix or []), sys.executable, *target, "--ros-args",
                        "-r", f"__ns:={namespace}"]
        for key, value in (parameters or {}).items():
            self.command += ["-p", f"{key}:={value}"]
        fd, log_path = tempfile.mkstemp(prefix=f"{name}.", suffix=".log", dir=log_dir)
        self.log_path = Path(log_path)
        self._log = os.fdopen(fd, "wb")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL,
                                        env={**os.environ, **(env or {})})

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        if not self._log.closed:  # still open while the node runs; stop() closes it
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGINT (clean shutdown), SIGKILL after ``grace_s``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def remove_log(self) -> None:
        self.log_path.unlink(missing_ok=True)


class Client:
    """A small rclpy node in its own context: publishes images and CameraInfo, collects answers."""

    def __init__(self, namespace: str, name: str = "face_expr_demo", answer_type: Any = None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        if answer_type is None:
            from face_expr_msgs.msg import FaceExpressionArray as answer_type
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        image_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, "image", image_qos)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", 1)
        self.answers: dict[int, tuple[float, Any]] = {}  # stamp ns -> (receive time, message)
        self.sub = self.node.create_subscription(answer_type, "faces/expression", self._on_answer,
                                                 10)

    def _on_answer(self, msg: Any) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.answers[stamp] = (time.monotonic(), msg)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def connected(self) -> bool:
        return self.image_pub.get_subscription_count() > 0 and self.sub.get_publisher_count() > 0

    def make_messages(self, rgb: np.ndarray, stamp_ns: int) -> tuple[Any, Any]:
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo
        from std_msgs.msg import Header

        from .ros_convert import rgb_to_image

        header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                        frame_id=FRAME_ID)
        h, w = rgb.shape[:2]
        K = camera_matrix(w, h)
        info = CameraInfo(header=header, width=w, height=h, distortion_model="plumb_bob")
        info.k = K.reshape(-1).tolist()
        info.d = [0.0] * 5
        info.r = np.eye(3).reshape(-1).tolist()
        info.p = np.hstack((K, np.zeros((3, 1)))).reshape(-1).tolist()
        return rgb_to_image(rgb, header), info

    def new_stamp(self) -> int:
        """A ROS time stamp (ns) never used before by this client."""
        now = self.node.get_clock().now().nanoseconds
        self._last = max(now, getattr(self, "_last", 0) + 1000)
        return self._last

    def publish(self, image: Any, info: Any) -> float:
        self.info_pub.publish(info)
        self.image_pub.publish(image)
        return time.monotonic()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def wait_connected(client: Client, nodes: list[NodeProcess], timeout_s: float) -> None:
    """Wait until every node subscribes and publishes (DemoError if one dies or time runs out)."""
    end = time.monotonic() + timeout_s
    while not client.connected():
        for node in nodes:
            if not node.running():
                raise DemoError(f"{node.name} exited with code {node.process.returncode} before "
                                f"it subscribed; its log ({node.log_path}):\n{node.log_tail()}")
        if time.monotonic() > end:
            raise DemoError(
                f"{', '.join(n.name for n in nodes)} did not connect within {timeout_s:.0f} s "
                f"(ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')}, loopback DDS); log tail:\n"
                + "\n".join(n.log_tail() for n in nodes))
        client.spin(0.1)


def request(client: Client, rgb: np.ndarray, nodes: list[NodeProcess], timeout_s: float,
            retry_s: float = 8.0) -> tuple[Any, float]:
    """Publish one frame and wait for its answer; returns (message, latency ms).

    A frame with no answer after ``retry_s`` is published again with a new stamp (a sample lost
    while discovery settles); either stamp's answer counts.
    """
    end = time.monotonic() + timeout_s
    sent: dict[int, float] = {}
    while time.monotonic() < end:
        stamp = client.new_stamp()
        image, info = client.make_messages(rgb, stamp)
        sent[stamp] = client.publish(image, info)
        retry_at = min(end, time.monotonic() + retry_s)
        while time.monotonic() < retry_at:
            client.spin(0.02)
            for s, t0 in sent.items():
                if s in client.answers:
                    received, msg = client.answers.pop(s)
                    return msg, (received - t0) * 1000.0
            for node in nodes:
                if not node.running():
                    raise DemoError(f"{node.name} exited with code {node.process.returncode}; "
                                    f"its log ({node.log_path}):\n{node.log_tail()}")
    raise DemoError(f"no answer within {timeout_s:.0f} s")


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
@dataclass
class FrameResult:
    name: str
    expected: int
    msg: Any = None
    latency_ms: float = float("nan")
    error: str = ""
    faces: list[Any] = field(default_factory=list)


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="run face_expr_node on example frames over ROS 2 and show what it publishes",
        description="Start face_expr_node (subprocess, loopback DDS, own ROS_DOMAIN_ID), publish "
                    "example frames made from skimage.data.astronaut() (NASA, public domain) as "
                    "sensor_msgs/Image, print what comes back on faces/expression and write "
                    "overlay images re-synthesised from the messages.")
    parser.add_argument("--out", type=Path, default=Path("face_expr_demo"), metavar="DIR",
                        help="folder for the overlay PNGs (created; default ./face_expr_demo)")
    parser.add_argument("--weights", type=Path, default=None, metavar="W",
                        help="network weights .safetensors (default: $FACE_EXPR_WEIGHTS, else "
                             "the package's weights)")
    parser.add_argument("--face-model", type=Path, default=None, metavar="PATH",
                        help="ict_face_model.npz (default: the standard search order)")
    parser.add_argument("--no-overlays", action="store_true", help="do not write overlay images")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="seconds for the whole run, node start-up included (default 120)")
    parser.set_defaults(run=run_demo)  # DemoError and WeightsError: one line from face_expr's main


def run_demo(args: argparse.Namespace) -> int:
    from .core.weights import resolve_weights_path

    start = time.monotonic()
    deadline = start + float(args.timeout)
    weights = str(resolve_weights_path(args.weights))  # the node loads them: only the path here
    model = None
    if not args.no_overlays:
        from .core.facemodel import load_face_model

        model = load_face_model(args.face_model)
        args.out.mkdir(parents=True, exist_ok=True)
    frames = example_frames()
    try:
        import rclpy  # noqa: F401
        import face_expr_msgs.msg  # noqa: F401
    except ImportError as err:
        raise DemoError(f"ROS 2 or this repository's messages are not importable ({err}); build "
                        "them with `bash .ci/setup_venv.sh` (README) or source your ROS 2 "
                        "workspace") from None
    domain = ros_environment()
    parameters = dict(NODE_PARAMETERS)
    if args.weights is not None:
        parameters["weights_path"] = str(args.weights.expanduser().resolve())
    if args.face_model is not None:
        parameters["face_model_path"] = str(args.face_model.expanduser().resolve())
    print(f"face_expr demo: ROS_DOMAIN_ID={domain}, DDS on the loopback; weights {weights}")
    settings = " ".join(f"{k}:={v}" for k, v in parameters.items())
    print(f"starting face_expr_node in {NAMESPACE} ({settings})")
    node = NodeProcess("face_expr_ros.node", NAMESPACE, parameters, name="face_expr_node")
    client = None
    results: list[FrameResult] = []
    try:
        client = Client(NAMESPACE)
        wait_connected(client, [node], max(1.0, deadline - time.monotonic()))
        print(f"node up after {time.monotonic() - start:.1f} s; warming up on one frame")
        request(client, frames["frontal"], [node], max(1.0, deadline - time.monotonic()))
        for name, rgb in frames.items():
            result = FrameResult(name, EXPECTED_FACES[name])
            try:
                result.msg, result.latency_ms = request(client, rgb, [node],
                                                        max(1.0, deadline - time.monotonic()))
                result.faces = list(result.msg.faces)
            except DemoError as err:
                result.error = str(err)
                if not node.running():
                    results.append(result)
                    break
            results.append(result)
    finally:
        if client is not None:
            client.close()
        code = node.stop()
    print(f"face_expr_node stopped (exit code {code})")
    print()
    print(format_table(results))
    missing = [r for r in results if r.msg is None]
    missing += [FrameResult(n, e, error="not sent") for n, e in EXPECTED_FACES.items()
                if n not in {r.name for r in results}]
    if model is not None:
        written = write_overlays(args.out, frames, results, model)
        print(f"\nwrote {len(written)} overlay images to {args.out}/ (mesh re-synthesised from "
              "each message's coefficients, identity and head pose; green dots: its landmarks)")
    mismatched = [r for r in results if r.msg is not None and len(r.faces) != r.expected]
    if mismatched:
        print("note: face counts differ from the frames' content for "
              + ", ".join(f"{r.name} ({len(r.faces)} found, {r.expected} in the image)"
                          for r in mismatched))
    if missing:
        raise DemoError(f"{len(missing)} of {len(EXPECTED_FACES)} frames got no answer "
                        f"({', '.join(f'{r.name}: {r.error}' for r in missing)}); node log tail:\n"
                        f"{node.log_tail()}")
    node.remove_log()
    print(f"\nall {len(results)} frames answered in {time.monotonic() - start:.1f} s")
    return 0


def format_table(results: list[FrameResult]) -> str:
    """One row per face (a frame without faces gets one row)."""
    header = ("frame", "faces", "id", "top-3 expression coefficients", "yaw/pitch/roll deg",
              "latency ms")
    rows = []
    for r in results:
        latency = f"{r.latency_ms:.0f}" if r.msg is not None else "-"
        if r.msg is None:
            reason = r.error.splitlines()[0] if r.error else ""
            rows.append((r.name, "-", "-", f"NO ANSWER: {reason}", "-", latency))
            continue
        count = f"{len(r.faces)}" + ("" if len(r.faces) == r.expected else f" (of {r.expected})")
        if not r.faces:
            rows.append((r.name, count, "-", "-", "-", latency))
        for i, face in enumerate(r.faces):
            top = " ".join(f"{n}={v:.2f}" for n, v in top_expressions(face))
            ypr = "/".join(f"{round(a) + 0:+d}" for a in head_pose_euler(face))
            rows.append((r.name if i == 0 else "", count if i == 0 else "", face.id, top, ypr,
                         latency if i == 0 else ""))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"
              for row in rows]
    return "\n".join(lines)


def write_overlays(out: Path, frames: dict[str, np.ndarray], results: list[FrameResult],
                   model: Any) -> list[Path]:
    from .core.export import write_image

    written = []
    tiles = []
    for r in results:
        if r.msg is None:
            continue
        rgb = frames[r.name]
        K = camera_matrix(rgb.shape[1], rgb.shape[0])
        image = overlay(rgb, r.faces, K, model, title=f"{r.name}: {len(r.faces)} face(s)")
        written.append(write_image(out / f"demo_{r.name}.png", image))
        tiles.append(image)
    if tiles:
        written.append(write_image(out / "demo_overview.png", contact_sheet(tiles)))
    return written


def contact_sheet(images: list[np.ndarray], columns: int = 3, width: int = 320) -> np.ndarray:
    """Images scaled to ``width`` and laid out in a grid (for the README)."""
    import cv2

    h = int(round(images[0].shape[0] * width / images[0].shape[1]))
    small = [cv2.resize(im, (width, h), interpolation=cv2.INTER_AREA) for im in images]
    while len(small) % columns:
        small.append(np.zeros_like(small[0]))
    rows = [np.hstack(small[i:i + columns]) for i in range(0, len(small), columns)]
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m face_expr_ros.demo [options]`` (same as ``face_expr demo``)."""
    from .cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
