"""face_expr_node: the ROS 2 node. Images in; expressions, head-pose TF, mesh markers, debug image and
diagnostics out. Thin: it converts messages, calls :class:`core.reconstruct.Reconstructor` and
publishes (docs/node.md is the operator's manual).

Threads: the executor runs the subscriptions, the parameter and lifecycle services and the 1 Hz
diagnostics timer; one worker thread runs the reconstruction. The image callback only puts the message
into a one-frame slot (a frame still waiting there is replaced and counted as dropped), so a slow
network never backs up DDS: the node always works on the newest frame.

Lifecycle (rclpy.lifecycle): configure builds the Reconstructor and the publishers, activate
subscribes and starts the worker, deactivate stops both, cleanup releases the network. With
``autostart`` (default) the node configures and activates itself.

Every parameter is defined once, in :data:`PARAMETERS`: the node declares them from it, the tests
compare config/face_expr.yaml with it, and docs/node.md's table is generated from it
(``python -m face_expr_ros.ros.node --markdown``).
"""
from __future__ import annotations

import os

# OpenMP threads (the face detector's, torch's) sleep instead of spinning while they wait: measured
# here (bench/latency.py --omp-active), spinning made detection ~10x slower (440 vs 41 ms per
# 640x480 frame) whenever another process was busy, as on a robot. Set before any OpenMP library
# loads; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math  # noqa: E402  (after the OpenMP setting on purpose)
import re
import sys
import threading
import time
import zlib
from typing import Any

import numpy as np

import rclpy
from rcl_interfaces.msg import SetParametersResult
try:
    from rclpy.event_handler import SubscriptionEventCallbacks, qos_policy_name_from_kind
except ImportError:  # rclpy of Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

    def qos_policy_name_from_kind(kind: Any) -> str:
        return getattr(kind, "name", str(kind))
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import Marker, MarkerArray

try:  # built from this repository (face_expr_msgs) and, without apt ROS 2, the tf2_msgs stand-in
    from face_expr_msgs.msg import FaceExpressionArray
    from tf2_msgs.msg import TFMessage

    from face_expr_ros.ros import convert as ros_convert
    MESSAGES_IMPORT_ERROR: ImportError | None = None
except ImportError as _err:  # reported by configure / main with the fix
    MESSAGES_IMPORT_ERROR = _err

MESSAGES_FIX = (
    "build the interface packages: in a venv `bash .ci/setup_venv.sh`; in a ROS 2 workspace "
    "`colcon build --base-paths src src/face_expr_ros/face_expr_msgs` then `source install/setup.bash` "
    "(tf2_msgs comes with ROS 2: apt install ros-$ROS_DISTRO-tf2-msgs)")
RECONSTRUCTOR_SETTINGS = frozenset({"detection_threshold", "min_face_px", "detector_max_side",
                                    "max_faces", "selection_threshold", "top_k",
                                    "detection_interval_s", "presence_threshold", "refine_iou"})
"""Run-time parameters applied through core.reconstruct.Reconstructor.configure (same names)."""


from face_expr_ros.ros.parameters import (  # noqa: F401  (re-exported: tests, tools)
    NODE_NAME, PARAMETERS, PARAMETERS_BY_NAME, ParameterSpec, check_value, default_parameters,
    TRACKING_PREFIX, descriptor_for, parameters_markdown, parameters_yaml)
from face_expr_ros.core.reduced_image import image_size
from face_expr_ros.core.tracking import ID_PREFIX
from face_expr_ros.ros.stats import NodeStats, stamp_latency_ms

# ---------------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------------
class FaceExprNode(LifecycleNode):
    """Managed node: parameters (:data:`PARAMETERS`), lifecycle, subscriptions, worker, publishers."""

    LOG_THROTTLE_S = 5.0

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._lifecycle_state = "unconfigured"  # what the parameter callback checks
        self._settings: dict[str, Any] = {}
        self._settings_lock = threading.Lock()
        self._changed: set[str] = set()  # runtime parameters the worker has to apply
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMETERS:  # CLI/YAML overrides pass through _on_set_parameters
            self.declare_parameter(spec.name, spec.default, descriptor_for(spec))
        self._settings = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}

        self.stats = NodeStats()
        self.reconstructor = None
        self._device = "none"
        self._backend = "none"
        self._outputs: dict[str, Any] = {}
        self._diagnostics_pub = None
        self._diagnostics_timer = None
        self._subscriptions_: list[Any] = []
        self._image_topic = ""
        # (K, (width, height)) of the latest usable CameraInfo, replaced as one object
        self._camera: tuple[np.ndarray, tuple[int, int]] | None = None
        self._warned: set[str] = set()
        self._log_times: dict[str, float] = {}
        # the one-frame slot and its worker
        self._slot: tuple[Any, float] | None = None
        self._slot_cv = threading.Condition()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        # mesh state (worker only)
        self._decimated = None
        self._decimated_key: tuple[str, int] | None = None
        self._mesh_ids: set[str] = set()
        self._pending_deletes: set[str] = set()
        self._last_mesh_time = -math.inf
        self._rep155 = None  # ros.rep155.Rep155Output while configured with rep155:=true

    @property
    def autostart(self) -> bool:
        return bool(self.get_parameter("autostart").value)

    def setting(self, name: str) -> Any:
        with self._settings_lock:
            return self._settings[name]

    # ---- parameters ---------------------------------------------------------------------
    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        """Reject values out of range or set in the wrong lifecycle state, with the reason."""
        accepted = {}
        for param in parameters:
            spec = PARAMETERS_BY_NAME.get(param.name)
            if spec is None:
                continue  # use_sim_time and other rclpy parameters
            if spec.applies == "configure" and self._lifecycle_state != "unconfigured":
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is applied at configure; the node is {self._lifecycle_state}: "
                    "deactivate and cleanup it (lifecycle), set the parameter, configure and "
                    "activate again, or restart the node"))
            if spec.applies == "activate" and self._lifecycle_state == "active":
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is applied at activate; deactivate the node (lifecycle), set "
                    "the parameter and activate it again, or restart the node"))
            try:
                accepted[param.name] = check_value(param.name, param.value)
            except ValueError as err:
                return SetParametersResult(successful=False, reason=str(err))
        with self._settings_lock:
            self._settings.update(accepted)
            self._changed.update(accepted)
        return SetParametersResult(successful=True)

    # ---- lifecycle ----------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        if MESSAGES_IMPORT_ERROR is not None:
            self.get_logger().error(f"cannot import the message packages ({MESSAGES_IMPORT_ERROR}); "
                                    f"{MESSAGES_FIX}")
            return TransitionCallbackReturn.FAILURE
        try:
            self.reconstructor = self._build_reconstructor()
        except Exception as err:  # WeightsError, FaceModelError, DetectorError, RuntimeError(device)
            settings = ", ".join(f"{n}={self.get_parameter(n).value!r}" for n in
                                 ("weights_path", "face_model_path", "device", "backend",
                                  "onnx_model", "detector"))
            self.get_logger().error(f"configure failed: {err} (parameters: {settings})")
            return TransitionCallbackReturn.FAILURE
        self._device = str(self.reconstructor.device)
        self._backend = self.reconstructor.backend
        with self._settings_lock:
            self._changed.clear()  # the new reconstructor has every current value
        self._decimated, self._decimated_key = None, None
        self._outputs = {
            "expression": self.create_lifecycle_publisher(FaceExpressionArray, "faces/expression", 10),
            # tf2_ros.TransformBroadcaster's QoS: depth 100, reliable, volatile
            "tf": self.create_lifecycle_publisher(TFMessage, "/tf", QoSProfile(
                depth=100, reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE)),
            "mesh": self.create_lifecycle_publisher(MarkerArray, "faces/mesh", 1),
            "debug_image": self.create_lifecycle_publisher(Image, "faces/debug_image", 1),
        }
        self._rep155 = self._build_rep155()
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"configured: network on {self._device} with {self._backend} "
            f"({self.reconstructor.backend_reason}), weights "
            f"{self.get_parameter('weights_path').value or '(default)'}, detector "
            f"{self.reconstructor.detector!r}")
        self._lifecycle_state = "inactive"
        return super().on_configure(state)

    def _build_reconstructor(self):
        from face_expr_ros.core.reconstruct import Reconstructor
        from face_expr_ros.core.tracking import Tracker

        s = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        if s["network_threads"]:  # torch's pool too: the torch backend and the small ops around
            import torch

            torch.set_num_threads(int(s["network_threads"]))
        tracker = Tracker(**{k[len(TRACKING_PREFIX):]: v for k, v in s.items()
                             if k.startswith(TRACKING_PREFIX)})
        reconstructor = Reconstructor(
            weights=s["weights_path"] or None, face_model=s["face_model_path"] or None,
            device=s["device"], detector=s["detector"],
            detector_model_path=s["detector_model_path"] or None,
            detection_threshold=s["detection_threshold"], min_face_px=s["min_face_px"],
            max_faces=s["max_faces"], selection_threshold=s["selection_threshold"],
            top_k=s["top_k"] or None, tracker=tracker, backend=s["backend"],
            onnx_model=s["onnx_model"] or None, detector_max_side=s["detector_max_side"],
            follow=s["follow_landmarks"], detection_interval_s=s["detection_interval_s"],
            presence_threshold=s["presence_threshold"], refine_iou=s["refine_iou"],
            defer_detection=True, detect_in_thread=s["detection_thread"],
            network_threads=s["network_threads"] or None)
        return reconstructor

    def _build_rep155(self):
        """The REP-155 output (ros.rep155), or None when off or hri_msgs does not import."""
        if not self.get_parameter("rep155").value:
            return None
        try:
            from face_expr_ros.ros.rep155 import Rep155Output
        except ImportError as err:
            self.get_logger().warning(
                f"rep155: hri_msgs does not import ({err}); REP-155 output off. Install "
                "ros-$ROS_DISTRO-hri-msgs (a venv: bash .ci/setup_venv.sh builds a stand-in) or "
                "set rep155:=false to silence this")
            return None
        return Rep155Output(self)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        transport = self.get_parameter("image_transport").value
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=int(self.get_parameter("image_qos_depth").value),
            reliability=(ReliabilityPolicy.RELIABLE
                         if self.get_parameter("image_reliability").value == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=DurabilityPolicy.VOLATILE)
        # like image_transport: the compressed topic follows the (remapped) image topic
        msg_type, topic = (Image, "image") if transport == "raw" else (
            CompressedImage, f"{self._resolve('image')}/compressed")
        self._image_topic = self._resolve(topic)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self._subscriptions_ = [
            self.create_subscription(msg_type, topic, self._on_image, qos, event_callbacks=events),
            # CameraInfo is small: best effort matches reliable and best-effort drivers alike
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, QoSProfile(
                depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)),
        ]
        self.get_logger().info(
            f"subscribed to {self._image_topic} ({msg_type.__name__}) with QoS "
            f"{self.get_parameter('image_reliability').value}, keep last {qos.depth}, volatile; "
            f"a best-effort camera driver needs image_reliability:=best_effort")
        with self.stats.lock:
            self.stats.incompatible_qos = 0  # a new subscription: earlier mismatches are history
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="face_expr_worker", daemon=True)
        self._worker.start()
        self._lifecycle_state = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_input()
        self._delete_all_markers()
        if self._rep155 is not None:
            self._rep155.clear()  # no frames while inactive: no tracked faces
        self.get_logger().info(f"deactivated: unsubscribed from {self._image_topic}")
        self._lifecycle_state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: network released")
        self._lifecycle_state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_input()
        self._release()
        self._lifecycle_state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._stop_input()
        self._release()
        self._lifecycle_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _resolve(self, topic: str) -> str:
        """Full name of ``topic`` after namespace and remapping (rclpy without it: as given)."""
        resolve = getattr(self, "resolve_topic_name", None)
        return resolve(topic) if resolve is not None else topic

    def _stop_input(self) -> None:
        for sub in self._subscriptions_:
            self.destroy_subscription(sub)
        self._subscriptions_ = []
        self._stop.set()
        with self._slot_cv:
            self._slot = None
            self._slot_cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None

    def _release(self) -> None:
        for pub in self._outputs.values():
            self.destroy_lifecycle_publisher(pub)
        self._outputs = {}
        if self._rep155 is not None:
            self._rep155.close()
            self._rep155 = None
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._diagnostics_pub is not None:
            self.destroy_publisher(self._diagnostics_pub)
            self._diagnostics_pub = None
        if self.reconstructor is not None:
            self.reconstructor.close()
        self.reconstructor = None
        self._camera = None
        self._mesh_ids.clear()
        self._pending_deletes.clear()

    # ---- callbacks (executor thread: never block) ----------------------------------------
    def _on_image(self, msg: Any) -> None:
        with self._slot_cv:
            with self.stats.lock:
                self.stats.received += 1
                if self._slot is not None:  # the worker is busy: the waiting frame is replaced
                    self.stats.dropped += 1
            self._slot = (msg, time.monotonic())
            self._slot_cv.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        if k[0, 0] > 0 and k[1, 1] > 0:
            self._camera = (k, (int(msg.width), int(msg.height)))
        else:
            self._warn_once("uncalibrated", "CameraInfo has no focal length (K all zero: "
                            "uncalibrated camera); using default_hfov_deg instead")

    def _on_incompatible_qos(self, info: Any) -> None:
        with self.stats.lock:
            self.stats.incompatible_qos += 1
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        ours = self.get_parameter("image_reliability").value
        publishers = []
        try:
            for endpoint in self.get_publishers_info_by_topic(self._image_topic):
                best_effort = endpoint.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                publishers.append(f"{endpoint.node_namespace.rstrip('/')}/{endpoint.node_name} "
                                  f"({'best_effort' if best_effort else 'reliable'}, "
                                  f"{endpoint.qos_profile.durability.name.lower()})")
        except Exception:  # graph query failed: the report goes out without the publisher list
            pass
        fix = ("set image_reliability:=best_effort (the publisher is best effort)"
               if policy == "RELIABILITY" and ours == "reliable"
               else "make the publisher's QoS compatible or change image_reliability")
        self.get_logger().error(
            f"incompatible QoS on {self._image_topic}: policy {policy}, this subscription is "
            f"{ours}; publishers: {', '.join(publishers) or 'unknown'}; no images arrive from it. "
            f"Fix: {fix} (parameter change needs deactivate/activate or a restart)")

    # ---- worker --------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            with self._slot_cv:
                while self._slot is None and not self._stop.is_set():
                    self._slot_cv.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                msg, received_at = self._slot
                self._slot = None
            try:
                self._process(msg, received_at)
            except ros_convert.ImageConversionError as err:
                self._count_error("bad_messages", err)
            except Exception as err:  # a bad frame never stops the node
                self._count_error("processing_errors", err, f"{type(err).__name__}: ")

    def _count_error(self, counter: str, err: Exception, prefix: str = "") -> None:
        text = f"{prefix}{err}"
        with self.stats.lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            self.stats.last_error = text
        what = "bad image message" if counter == "bad_messages" else "processing failed"
        self._log_throttled(f"{counter}:{re.sub(r'[0-9.]+', '#', text)[:60]}",
                            f"{what} on {self._image_topic}, skipped: {text}")

    def _apply_settings(self) -> dict[str, Any]:
        """Apply run-time parameter changes to the reconstructor; return a settings snapshot."""
        with self._settings_lock:
            settings, changed = dict(self._settings), set(self._changed)
            self._changed.clear()
        r = self.reconstructor
        tracking = {n[len(TRACKING_PREFIX):]: settings[n] for n in changed
                    if n.startswith(TRACKING_PREFIX)}
        if tracking:
            r.tracker.configure(**tracking)
        runtime = changed & RECONSTRUCTOR_SETTINGS
        if runtime:
            r.configure(**{name: settings[name] for name in runtime})
        return settings

    def _process(self, msg: Any, received_at: float) -> None:
        settings = self._apply_settings()
        max_pixels = int(settings["max_image_pixels"])
        if isinstance(msg, CompressedImage):
            decoded = ros_convert.decode_compressed(msg, max_pixels, self._reduction(settings))
            self.stats.count_reduced(decoded.factor)
            # a reduced frame only reaches what maps it to the full image's pixels
            rgb = decoded if decoded.factor > 1 else decoded.pixels
        else:
            rgb = ros_convert.image_to_rgb(msg, max_pixels)
        header = msg.header
        if not header.frame_id:
            self._warn_once("frame_id", "images have an empty header.frame_id: TF frames face_<id> "
                            "have no parent; set the camera driver's frame_id")
        stamp_ns = header.stamp.sec * 10 ** 9 + header.stamp.nanosec
        # a zero stamp (some drivers) would freeze the smoothing filters: use the receive time
        timestamp = header.stamp.sec + header.stamp.nanosec * 1e-9 if stamp_ns > 0 else received_at
        width, height = image_size(rgb)
        faces = self.reconstructor.reconstruct(rgb, timestamp)
        dropped_ids = self.reconstructor.tracker.dropped_ids()
        K = self._intrinsics(width, height, settings)

        messages, transforms, poses = ros_convert.faces_to_messages(header, faces, K, (width, height))
        self._outputs["expression"].publish(ros_convert.faces_to_array_msg(header, messages))
        if settings["publish_tf"] and transforms:
            self._outputs["tf"].publish(TFMessage(transforms=transforms))
        if self._rep155 is not None:
            self._rep155.publish(header, rgb, faces, dropped_ids, (
                int(settings["humans.faces.width"]), int(settings["humans.faces.height"])))
        self._pending_deletes.update(i for i in dropped_ids if i in self._mesh_ids)
        # the model-space meshes, synthesised once per face and frame, only when drawn
        vertices = _LazyVertices(faces)
        if settings["publish_mesh"]:
            self._publish_mesh(header, faces, K, poses, vertices, settings)
        if settings["publish_debug_image"]:
            self._publish_debug_image(header, rgb, faces, vertices, settings)

        now_ns = self.get_clock().now().nanoseconds
        self.stats.add_latency((time.monotonic() - received_at) * 1000.0,
                               stamp_latency_ms(stamp_ns, now_ns))
        with self.stats.lock:
            self.stats.processed += 1
            self.stats.faces = len(faces)
        # the tracking mode's detection, after this frame's faces are out (core.reconstruct)
        self.reconstructor.detect_deferred()

    def _reduction(self, settings: dict[str, Any]):
        """The ``(width, height) -> factor`` of a JPEG's decode (parameter reduced_decode), or
        None (full size): the outputs that draw on the image's pixels need them all."""
        if not settings["reduced_decode"] or settings["publish_debug_image"]:
            return None
        if self._rep155 is not None and self._rep155.wants_images():
            return None
        return self.reconstructor.reduction_for

    def _intrinsics(self, width: int, height: int, settings: dict[str, Any]) -> np.ndarray:
        """K of the latest CameraInfo (rescaled to this image's size), else the default K."""
        from face_expr_ros.core.camera import default_camera_matrix

        camera = self._camera
        if camera is None:
            self._warn_once("no_camera_info", (
                f"no CameraInfo received on {self._resolve('camera_info')}: assuming a "
                f"horizontal field of view of {settings['default_hfov_deg']} deg "
                "(default_hfov_deg); metric head positions are approximate"))
            return default_camera_matrix(width, height, float(settings["default_hfov_deg"]))
        K, (cw, ch) = camera
        if cw > 0 and ch > 0 and (cw, ch) != (width, height):  # image resized after calibration
            K = np.diag([width / cw, height / ch, 1.0]) @ K
        return K

    def _mesh(self, settings: dict[str, Any]):
        """The decimated mesh (computed once per mesh_region / mesh_max_triangles)."""
        from face_expr_ros.core.render import region_triangles

        key = (settings["mesh_region"], int(settings["mesh_max_triangles"]))
        if self._decimated_key != key:
            model = self.reconstructor.model
            triangles = region_triangles(model, key[0])
            self._decimated = ros_convert.decimate_mesh(model.neutral, triangles,
                                                        key[1] or len(triangles))
            self._decimated_key = key
        return self._decimated

    def _publish_mesh(self, header: Any, faces: list, K: np.ndarray, poses: list,
                      vertices: _LazyVertices, settings: dict[str, Any]) -> None:
        rate = float(settings["mesh_rate"])
        now = time.monotonic()
        if rate > 0 and now - self._last_mesh_time < 1.0 / rate:
            return
        self._last_mesh_time = now
        mesh = self._mesh(settings)
        markers = MarkerArray()
        for face_id in sorted(self._pending_deletes):
            markers.markers.append(ros_convert.delete_marker(header, _marker_id(face_id)))
            self._mesh_ids.discard(face_id)
        self._pending_deletes.clear()
        for i, face in enumerate(faces):
            optical = face.optical_vertices(K, vertices[i], pose=poses[i])[mesh.vertex_index]
            markers.markers.append(ros_convert.mesh_to_marker(
                header, face.id, optical, mesh.triangles, marker_id=_marker_id(face.id)))
            self._mesh_ids.add(face.id)
        if markers.markers:
            self._outputs["mesh"].publish(markers)

    def _delete_all_markers(self) -> None:
        pub = self._outputs.get("mesh")
        if pub is not None and self._mesh_ids:
            marker = Marker(action=Marker.DELETEALL, ns="face_mesh")
            pub.publish(MarkerArray(markers=[marker]))
            self._mesh_ids.clear()

    def _publish_debug_image(self, header: Any, rgb: np.ndarray, faces: list,
                             vertices: _LazyVertices, settings: dict[str, Any]) -> None:
        import cv2

        from face_expr_ros.core.render import draw_landmarks, render_mesh

        out = rgb.copy()
        mode = settings["debug_image_mesh"]
        mesh = self._mesh(settings) if mode != "none" else None
        for i, face in enumerate(faces):
            if mesh is not None:
                px = face.image_vertices(vertices[i])[mesh.vertex_index]
                if mode == "rendered":
                    out = render_mesh(px, mesh.triangles, out, alpha=0.6)
                else:
                    polygons = np.rint(px[:, :2][mesh.triangles] * 4).astype(np.int32)
                    cv2.polylines(out, list(polygons), True, (80, 160, 255), 1, cv2.LINE_AA, 2)
            x0, y0, x1, y1 = (int(round(v)) for v in face.box)
            cv2.rectangle(out, (x0, y0), (x1, y1), (255, 200, 0), 2)
            cv2.putText(out, f"{face.id} {face.score:.2f}", (x0, max(12, y0 - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 200, 0), 1, cv2.LINE_AA)
            out = draw_landmarks(out, face.landmarks)
        self._outputs["debug_image"].publish(ros_convert.rgb_to_image(out, header))

    # ---- diagnostics ---------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        s = self.stats.snapshot()
        warn_ms = float(self.setting("latency_warn_ms"))
        p95 = s["latency_receive_p95_ms"]
        level, message = DiagnosticStatus.OK, "ok"
        if self._lifecycle_state != "active":
            message = f"{self._lifecycle_state}: not processing"
        elif p95 is not None and p95 > warn_ms:
            level = DiagnosticStatus.WARN
            message = (f"slow: latency p95 {p95:.0f} ms > latency_warn_ms {warn_ms:.0f} ms "
                       f"(device {self._device}, backend {self._backend}; lower the image rate "
                       "or size, or use a GPU)")
        elif s["incompatible_qos"]:
            level, message = DiagnosticStatus.WARN, "incompatible image publisher QoS (see log)"
        elif s["received"] == 0:
            message = f"waiting for images on {self._image_topic}"

        def fmt(v: Any) -> str:
            if v is None:
                return "n/a"
            return f"{v:.1f}" if isinstance(v, float) else str(v)

        values = [
            ("state", self._lifecycle_state), ("image_topic", self._image_topic),
            ("device", self._device), ("backend", self._backend),
            ("fps_in", s["fps_in"]), ("fps_out", s["fps_out"]),
            ("latency_receive_p50_ms", s["latency_receive_p50_ms"]),
            ("latency_receive_p95_ms", p95),
            ("latency_stamp_p50_ms", s["latency_stamp_p50_ms"]),
            ("latency_stamp_p95_ms", s["latency_stamp_p95_ms"]),
            ("frames_received", s["received"]), ("frames_processed", s["processed"]),
            ("dropped_frames", s["dropped"]), ("bad_messages", s["bad_messages"]),
            ("processing_errors", s["processing_errors"]),
            ("incompatible_qos_events", s["incompatible_qos"]), ("faces", s["faces"]),
            ("frames_decoded_reduced", s["reduced"]),
            ("camera_info", "received" if self._camera is not None
             else f"none (default_hfov_deg {self.setting('default_hfov_deg')})"),
            ("last_error", s["last_error"]),
        ]
        status = DiagnosticStatus(
            level=level, name=f"{self.get_fully_qualified_name()}: face expression pipeline",
            message=message,
            hardware_id=self._device, values=[KeyValue(key=k, value=fmt(v)) for k, v in values])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        if self._diagnostics_pub is not None:
            self._diagnostics_pub.publish(array)

    # ---- logging helpers -----------------------------------------------------------------
    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def _log_throttled(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._log_times.get(key, -math.inf) >= self.LOG_THROTTLE_S:
            self._log_times[key] = now
            self.get_logger().warning(text)


class _LazyVertices:
    """``faces[i].model_vertices()``, synthesised on first use: at most once per face and frame,
    and not at all when neither the mesh nor the debug image draws it."""

    def __init__(self, faces: list) -> None:
        self._faces = faces
        self._vertices: dict[int, np.ndarray] = {}

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in self._vertices:
            self._vertices[index] = self._faces[index].model_vertices()
        return self._vertices[index]


def _marker_id(face_id: str) -> int:
    """Marker id of a face: the tracker's number (``f7`` -> 7), else a 31-bit hash of the id."""
    number = face_id.removeprefix(ID_PREFIX)
    return int(number) if number.isdigit() and int(number) < 2 ** 31 else (
        zlib.crc32(face_id.encode()) & 0x7FFFFFFF)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``face_expr_node`` (also ``python -m face_expr_ros.ros.node``)."""
    argv = sys.argv if args is None else args
    if "--markdown" in argv[1:] or "--yaml" in argv[1:]:
        sys.stdout.write(parameters_markdown() if "--markdown" in argv else parameters_yaml())
        return 0
    if MESSAGES_IMPORT_ERROR is not None:
        print(f"face_expr_node: cannot import the message packages ({MESSAGES_IMPORT_ERROR}); "
              f"{MESSAGES_FIX}", file=sys.stderr)
        return 1
    rclpy.init(args=argv)
    node = None
    code = 0
    try:
        try:
            node = FaceExprNode()
        except Exception as err:  # a rejected parameter override: InvalidParameterValueException
            print(f"face_expr_node: {err}", file=sys.stderr)
            return 2
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("configure failed (see above); exiting. Fix the parameter "
                                        "or start with autostart:=false and a lifecycle manager")
                return 1
            node.trigger_activate()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node._stop_input()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
