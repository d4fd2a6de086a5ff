"""The node's parameters, defined once: declarations, validation, config/face_expr.yaml and the
docs/node.md table are all generated from :data:`PARAMETERS`
(``python -m face_expr_ros.ros.node --yaml`` / ``--markdown``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

NODE_NAME = "face_expr_node"

# ---------------------------------------------------------------------------------------------
# The parameter table: the single source of truth
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter.

    Attributes:
        name: ROS name ("tracking.x" is ``tracking: {x: ...}`` in YAML).
        default: value and type (bool, int, float or str).
        description: what it does, for the descriptor, the YAML and docs/node.md.
        low, high: inclusive numeric range (descriptor range; None = unbounded).
        choices: allowed strings (empty = any).
        applies: when a change takes effect: "runtime" (next frame), "activate" (rejected while
            active: deactivate, set, activate), "configure" (rejected unless unconfigured:
            deactivate, cleanup, set, configure), "startup" (read-only).
    """

    name: str
    default: bool | int | float | str
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    applies: str = "runtime"

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string"}[type(self.default)]

    def range_text(self) -> str:
        if self.choices:
            return " \\| ".join(self.choices)
        if self.low is None and self.high is None:
            return ""
        lo = "-inf" if self.low is None else _fmt(self.low)
        hi = "inf" if self.high is None else _fmt(self.high)
        return f"[{lo}, {hi}]"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


_INT_MAX = 2 ** 31 - 1
PARAMETERS: tuple[ParameterSpec, ...] = (
    # -- start-up / lifecycle
    ParameterSpec("autostart", True,
                  "Configure and activate at start, so the node runs without a lifecycle manager. "
                  "false: wait for lifecycle transitions (nav2 lifecycle_manager, "
                  "lifecycle_msgs/srv/ChangeState on ~/change_state).", applies="startup"),
    # -- model (configure)
    ParameterSpec("weights_path", "",
                  "Network weights (.safetensors). \"\" = $FACE_EXPR_WEIGHTS, else the weights "
                  "installed with the package.", applies="configure"),
    ParameterSpec("face_model_path", "",
                  "Compact face model ict_face_model.npz. \"\" = the search order: "
                  "$FACE_EXPR_FACE_MODEL, ../shared/facemodel beside the checkout, "
                  "share/face_expr_ros/facemodel, ~/.local/share/face_expr_ros, the compact model "
                  "shipped in the package (README, \"The face model\").", applies="configure"),
    ParameterSpec("device", "auto",
                  "Torch device of the network: auto (CUDA when available, else CPU), cpu, cuda, "
                  "cuda:N.", applies="configure"),
    ParameterSpec("backend", "auto",
                  "What runs the network: torch; onnx (ONNX Runtime: CPU, or its CUDA provider "
                  "with device cuda and onnxruntime-gpu); auto = torch on CUDA, on CPU onnx when "
                  "onnxruntime is installed and the model is cached or can be exported (once, "
                  "about 10 s), else torch (docs/onnx.md). The choice is logged and in "
                  "/diagnostics.", choices=("auto", "torch", "onnx"), applies="configure"),
    ParameterSpec("onnx_model", "",
                  "Exported ONNX model (face_expr export-onnx -o FILE) for the onnx backend; it "
                  "must come from the weights in use. \"\" = the cache "
                  "($XDG_CACHE_HOME/face_expr_ros/onnx, default ~/.cache), exported when missing.",
                  applies="configure"),
    ParameterSpec("network_threads", 1,
                  "CPU threads of the network (ONNX Runtime intra-op threads; torch's on the torch "
                  "backend); 0 = torch's default (all cores or OMP_NUM_THREADS). 1 is as fast for one "
                  "face (ONNX 1.52 vs 1.58 ms on 2 threads; 3 faces 4.23 vs 3.64 ms: "
                  "bench/backends.py) and leaves the other cores to the detection thread and "
                  "the executor (docs/node.md).", low=0, high=256,
                  applies="configure"),
    ParameterSpec("detector", "default",
                  "Face detector backend (core.detect): default (= libfacedetection), "
                  "libfacedetection, blazeface, dlib_hog (docs/detection.md).",
                  choices=("default", "libfacedetection", "blazeface", "dlib_hog"),
                  applies="configure"),
    ParameterSpec("detector_model_path", "",
                  "Local model file for detectors that load one (blazeface); \"\" = the packaged one.",
                  applies="configure"),
    # -- input (activate)
    ParameterSpec("image_transport", "raw",
                  "raw: subscribe to image (sensor_msgs/Image); compressed: subscribe to "
                  "<image>/compressed (sensor_msgs/CompressedImage, JPEG or PNG).",
                  choices=("raw", "compressed"), applies="activate"),
    ParameterSpec("image_reliability", "reliable",
                  "QoS reliability of the image subscription. reliable receives large frames "
                  "across processes but does not match a best-effort publisher; best_effort "
                  "matches every publisher but loses frames of 640x480 and more across "
                  "processes (docs/node.md, QoS).",
                  choices=("reliable", "best_effort"), applies="activate"),
    ParameterSpec("image_qos_depth", 1,
                  "QoS history depth of the image subscription (1: only the newest frame matters).",
                  low=1, high=100, applies="activate"),
    ParameterSpec("max_image_pixels", 40_000_000,
                  "Images with more pixels (width x height) are rejected as bad messages.",
                  low=1, high=_INT_MAX),
    ParameterSpec("reduced_decode", True,
                  "image_transport compressed, tracking mode: a JPEG is decoded at 1/2, 1/4 or 1/8 "
                  "of its size when that changes no output: the detector would downscale it as "
                  "much (detector_max_side) and every followed face's crop shrinks it as much; "
                  "not while publish_debug_image or a REP-155 cropped/aligned topic is "
                  "subscribed (docs/node.md; 1280x720 at 1/2 decodes in 0.6 of the time: "
                  "bench/latency.py, JPEG decode)."),
    ParameterSpec("default_hfov_deg", 60.0,
                  "Horizontal field of view assumed while no CameraInfo (with fx > 0) has arrived "
                  "on camera_info; sets the metric scale of head positions.", low=1.0, high=179.0),
    # -- detection and reconstruction (runtime)
    ParameterSpec("detection_threshold", 0.5, "Face detections scoring below it are ignored.",
                  low=0.0, high=1.0),
    ParameterSpec("min_face_px", 16, "Faces narrower than this (image pixels) are ignored.",
                  low=0, high=100_000),
    ParameterSpec("detector_max_side", 640,
                  "Images whose longer side exceeds it are downscaled for detection only (speed; "
                  "faces smaller than about 20 px after scaling are missed). 640 (measured, "
                  "docs/detection.md): 640x480 detected as is, 1280x720 at 640x360, 7x cheaper, "
                  "finding faces from 32 px instead of 20 px.", low=64, high=100_000),
    ParameterSpec("max_faces", 10, "Most faces reconstructed per image (the largest are kept).",
                  low=1, high=100),
    ParameterSpec("selection_threshold", 0.05,
                  "Expression templates with a coefficient >= it are used for the mesh "
                  "(the message's selected field); the largest is always used.", low=0.0, high=1.0),
    ParameterSpec("top_k", 20, "At most this many templates are selected; 0 = no limit.",
                  low=0, high=1000),
    # -- tracking mode (core.follow)
    ParameterSpec("follow_landmarks", True,
                  "Tracking mode: a tracked face's next crop comes from its landmarks, and the "
                  "detector runs only on the first frame, every detection_interval_s and when a "
                  "face is lost (docs/node.md, Tracking mode). false: detect every frame.",
                  applies="configure"),
    ParameterSpec("detection_interval_s", 0.5,
                  "Tracking mode: seconds between detections while faces are followed (to find "
                  "new faces: a new face waits at most this long, plus min_hits frames); 0 = "
                  "detect every frame.", low=0.0, high=60.0),
    ParameterSpec("presence_threshold", 0.5,
                  "Tracking mode: a followed face whose presence score (the detector's score on "
                  "its crop, or the network's presence head) falls below it is lost, and the "
                  "next frame is detected.", low=0.0, high=1.0),
    ParameterSpec("refine_iou", 0.95,
                  "Tracking mode: a followed face whose new landmark box has IoU below it with the "
                  "box its crop was framed on is cropped again around its new landmarks and run "
                  "again (about 4 ms a face; 1.0 = every face, 0.0 = none; docs/node.md).",
                  low=0.0, high=1.0),
    ParameterSpec("detection_thread", True,
                  "Tracking mode: the scheduled detection runs in a thread of its own at a lower "
                  "priority while frames go on (false: after the frame's faces are published, "
                  "in the frame's thread).", applies="configure"),
    # -- tracking and smoothing (runtime; core.tracking.validate_parameter)
    ParameterSpec("tracking.min_hits", 2,
                  "Frames with a detection before a face is published (its id confirmed).",
                  low=1, high=1000),
    ParameterSpec("tracking.max_missed", 5,
                  "Processed frames without a detection a confirmed face survives (keeps its id).",
                  low=0, high=1000),
    ParameterSpec("tracking.iou_threshold", 0.3,
                  "Least box IoU between frames for a detection to keep a face's id (> 0).",
                  low=0.0, high=1.0),
    ParameterSpec("tracking.smoothing", True,
                  "One-Euro smoothing of coefficients and pose per face id."),
    ParameterSpec("tracking.min_cutoff", 1.0,
                  "One-Euro cutoff (Hz) of the coefficients at rest (> 0); lower = smoother, more "
                  "lag.", low=0.0, high=1000.0),
    ParameterSpec("tracking.beta", 0.5,
                  "One-Euro speed coefficient of the coefficients; higher = less lag when moving.",
                  low=0.0, high=1000.0),
    ParameterSpec("tracking.pose_min_cutoff", 1.0,
                  "One-Euro cutoff (Hz) of rotation, position and scale at rest (> 0).",
                  low=0.0, high=1000.0),
    ParameterSpec("tracking.pose_beta", 1.0, "One-Euro speed coefficient of the pose.",
                  low=0.0, high=1000.0),
    ParameterSpec("tracking.d_cutoff", 1.0,
                  "Cutoff (Hz) of the speed estimates of all One-Euro filters (> 0).",
                  low=0.0, high=1000.0),
    # -- outputs (runtime)
    ParameterSpec("publish_tf", True, "Publish face_<id> and gaze_<id> on /tf."),
    # -- REP-155 (ROS4HRI) output (docs/node.md, "REP-155 output")
    ParameterSpec("rep155", True,
                  "Publish REP-155 (ROS4HRI) topics for HRI stacks: /humans/faces/tracked and per "
                  "face /humans/faces/<id>/{roi,landmarks,facs,cropped,aligned,expression}. Needs "
                  "hri_msgs (ros-$ROS_DISTRO-hri-msgs); without it the node logs a warning and "
                  "runs without this output.", applies="configure"),
    ParameterSpec("humans.faces.width", 128,
                  "Width in pixels of /humans/faces/<id>/cropped and /aligned (REP-155's "
                  "/humans/faces/width).", low=8, high=2048),
    ParameterSpec("humans.faces.height", 128,
                  "Height in pixels of /humans/faces/<id>/cropped and /aligned (REP-155's "
                  "/humans/faces/height).", low=8, high=2048),
    ParameterSpec("publish_mesh", False,
                  "Publish faces/mesh (visualization_msgs/MarkerArray, one TRIANGLE_LIST per face)."),
    ParameterSpec("mesh_max_triangles", 2000,
                  "Triangles per mesh marker after decimation (vertex clustering); 0 = full mesh.",
                  low=0, high=1_000_000),
    ParameterSpec("mesh_rate", 5.0,
                  "Most mesh updates per second (Hz); 0 = every processed frame.",
                  low=0.0, high=1000.0),
    ParameterSpec("mesh_region", "face",
                  "Mesh part in markers and debug image: face (face area) or head (whole head).",
                  choices=("face", "head")),
    ParameterSpec("publish_debug_image", False,
                  "Publish faces/debug_image (rgb8): the frame with boxes, ids, landmarks and mesh."),
    ParameterSpec("debug_image_mesh", "wireframe",
                  "Mesh drawn in the debug image: none, wireframe, or rendered (shaded, slower).",
                  choices=("none", "wireframe", "rendered")),
    ParameterSpec("latency_warn_ms", 250.0,
                  "Diagnostics turn WARN when the 95th percentile of receive->publish latency "
                  "exceeds it (milliseconds).", low=1.0, high=1e6),
)
PARAMETERS_BY_NAME = {p.name: p for p in PARAMETERS}
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
TRACKING_PREFIX = "tracking."
_APPLIES_TEXT = {
    "runtime": "yes",
    "activate": "when inactive (applied at activate)",
    "configure": "when unconfigured (applied at configure)",
    "startup": "no (read-only)",
}


def default_parameters() -> dict[str, Any]:
    """name -> default of every parameter (flat, dotted names)."""
    return {p.name: p.default for p in PARAMETERS}


def descriptor_for(spec: ParameterSpec) -> ParameterDescriptor:
    """The ParameterDescriptor declared for ``spec`` (description, ranges, read_only)."""
    applies = {"runtime": "Changeable at run time.",
               "activate": "Applied at activate: deactivate, set, activate.",
               "configure": "Applied at configure: deactivate, cleanup, set, configure "
                            "(or restart the node).",
               "startup": "Read-only (set at start)."}[spec.applies]
    choices = f" One of: {', '.join(spec.choices)}." if spec.choices else ""
    descriptor = ParameterDescriptor(name=spec.name, description=f"{spec.description}{choices} "
                                     f"{applies}", read_only=spec.applies == "startup")
    if isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(-1e300 if spec.low is None else spec.low),
            to_value=float(1e300 if spec.high is None else spec.high), step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
        descriptor.integer_range = [IntegerRange(
            from_value=int(-_INT_MAX if spec.low is None else spec.low),
            to_value=int(_INT_MAX if spec.high is None else spec.high), step=0)]
    if spec.choices:
        descriptor.additional_constraints = f"one of: {', '.join(spec.choices)}"
    return descriptor


def check_value(name: str, value: Any) -> Any:
    """Validate a value beyond type and range (those the descriptor enforces); return it.

    Raises:
        ValueError: naming the parameter, the value and what is allowed.
    """
    spec = PARAMETERS_BY_NAME[name]
    if spec.choices and value not in spec.choices:
        raise ValueError(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
    if name == "device" and not _DEVICE_PATTERN.match(str(value)):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
    if name.startswith(TRACKING_PREFIX):
        from face_expr_ros.core.tracking import validate_parameter
        return validate_parameter(name[len(TRACKING_PREFIX):], value)
    if spec.low is not None and not isinstance(value, (bool, str)) and value < spec.low:
        raise ValueError(f"{name} must be >= {spec.low}, got {value!r}")
    if spec.high is not None and not isinstance(value, (bool, str)) and value > spec.high:
        raise ValueError(f"{name} must be <= {spec.high}, got {value!r}")
    return value


def parameters_yaml() -> str:
    """config/face_expr.yaml's content: every parameter with its default and description."""
    lines = [
        "# Parameters of face_expr_node, every one with its default (generated from",
        "# face_expr_ros/ros/node.py PARAMETERS: python -m face_expr_ros.ros.node --yaml).",
        "# Use: ros2 run face_expr_ros face_expr_node --ros-args --params-file face_expr.yaml",
        "# \"/**/face_expr_node\" matches the node in any namespace (launch namespace:=...).",
        "/**/face_expr_node:",
        "  ros__parameters:",
    ]
    group: list[str] = []
    for spec in PARAMETERS:
        parts = spec.name.split(".")
        shared = 0  # the groups this name shares with the previous one stay open
        while shared < min(len(group), len(parts) - 1) and group[shared] == parts[shared]:
            shared += 1
        for depth in range(shared, len(parts) - 1):
            lines.append(f"{'  ' * (depth + 2)}{parts[depth]}:")
        group = parts[:-1]
        indent = "  " * (len(parts) + 1)
        when = {"runtime": "", "activate": " [applied at activate]",
                "configure": " [applied at configure]", "startup": " [read-only]"}[spec.applies]
        if spec.choices:
            rng = f" One of: {', '.join(spec.choices)}."
        else:
            rng = f" Range {spec.range_text()}." if spec.range_text() else ""
        text = f"{spec.description}{rng}{when}"
        for chunk in _wrap(text, 96 - len(indent)):
            lines.append(f"{indent}# {chunk}")
        lines.append(f"{indent}{parts[-1]}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else f'"{value}"'
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width) or [""]


def parameters_markdown() -> str:
    """docs/node.md's parameter table (generated; ``python -m face_expr_ros.ros.node --markdown``)."""
    rows = ["| name | type | default | range | changeable at run time | description |",
            "|---|---|---|---|---|---|"]
    for spec in PARAMETERS:
        default = _yaml_value(spec.default)
        description = spec.description.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {spec.type_name} | `{default}` | {spec.range_text()} | "
                    f"{_APPLIES_TEXT[spec.applies]} | {description} |")
    return "\n".join(rows) + "\n"


