"""config/face_expr.yaml, launch/face_expr.launch.py, config/face_expr.rviz and docs/node.md against
the node's single parameter table (face_expr_ros.ros.node.PARAMETERS).

launch and launch_ros are not installed here: the launch file is parsed, and its
generate_launch_description() runs against recording stand-ins of the launch classes, so every
name it uses, every file it references and every argument it declares is checked.
"""
import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from conftest import REPO

LAUNCH_FILE = REPO / "launch" / "face_expr.launch.py"
PARAMS_FILE = REPO / "config" / "face_expr.yaml"
RVIZ_FILE = REPO / "config" / "face_expr.rviz"
DOC = REPO / "docs" / "node.md"
YAML_KEY = "/**/face_expr_node"


@pytest.fixture(scope="module")
def node_module():
    try:
        import face_expr_ros.ros.node as module
    except ImportError as err:
        from conftest import skip_or_fail
        skip_or_fail(f"face_expr_ros.ros.node not importable ({err}); build the venv with "
                     "`bash .ci/setup_venv.sh`")
    return module


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"tracking": {"beta": 1}} -> {"tracking.beta": 1} (how ROS 2 reads nested YAML)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---- parameters -------------------------------------------------------------------------------------

def test_yaml_holds_exactly_the_declared_parameters_and_defaults(node_module):
    document = yaml.safe_load(PARAMS_FILE.read_text())
    assert list(document) == [YAML_KEY]
    params = flatten(document[YAML_KEY]["ros__parameters"])
    expected = node_module.default_parameters()
    assert sorted(params) == sorted(expected), (
        f"missing {sorted(set(expected) - set(params))}, extra {sorted(set(params) - set(expected))}")
    for name, default in expected.items():
        assert params[name] == default and type(params[name]) is type(default), (
            name, params[name], default)


def test_yaml_is_the_generated_one(node_module):
    assert PARAMS_FILE.read_text() == node_module.parameters_yaml(), (
        "config/face_expr.yaml is out of date: python -m face_expr_ros.ros.node --yaml > "
        "config/face_expr.yaml")


def test_parameter_table_is_consistent(node_module):
    from face_expr_ros.core.synthesis import DEFAULT_THRESHOLD, DEFAULT_TOP_K
    from face_expr_ros.core.tracking import PARAMETER_RANGES, SmoothingParameters, Tracker

    specs = node_module.PARAMETERS_BY_NAME
    assert len(specs) == len(node_module.PARAMETERS), "duplicate parameter names"
    for spec in node_module.PARAMETERS:
        assert spec.description.strip() and spec.applies in ("runtime", "activate", "configure",
                                                              "startup")
        if spec.choices:
            assert spec.default in spec.choices, spec.name
        if spec.low is not None:
            assert spec.low <= spec.default, spec.name
        if spec.high is not None:
            assert spec.default <= spec.high, spec.name
        node_module.check_value(spec.name, spec.default)
    # the tracker's own parameters and defaults, under tracking.
    tracker = Tracker()
    core = {"min_hits": tracker.min_hits, "max_missed": tracker.max_missed,
            "iou_threshold": tracker.iou_threshold, **SmoothingParameters().__dict__}
    assert sorted(core) == sorted(PARAMETER_RANGES)
    for name, value in core.items():
        assert specs[f"tracking.{name}"].default == value, name
    assert specs["selection_threshold"].default == DEFAULT_THRESHOLD
    assert specs["top_k"].default == DEFAULT_TOP_K


def test_node_declares_the_table_with_descriptors(ros_env, node_module):
    import rclpy
    from rcl_interfaces.msg import ParameterType

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = node_module.FaceExprNode(context=context)  # autostart acts in main(), not here
        try:
            declared = {name: node.get_parameter(name).value
                        for name in node.get_parameters_by_prefix("").keys()}
            declared.pop("use_sim_time", None)
            declared.pop("start_type_description_service", None)
            assert declared == node_module.default_parameters()
            for spec in node_module.PARAMETERS:
                d = node.describe_parameter(spec.name)
                assert d.description.startswith(spec.description), spec.name
                if d.type == ParameterType.PARAMETER_DOUBLE:
                    assert len(d.floating_point_range) == 1, spec.name
                if d.type == ParameterType.PARAMETER_INTEGER:
                    assert len(d.integer_range) == 1, spec.name
                assert d.read_only == (spec.applies == "startup"), spec.name
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()


def test_params_file_reaches_the_node_in_a_namespace(ros_env, node_module, tmp_path):
    import rclpy

    document = yaml.safe_load(PARAMS_FILE.read_text())
    document[YAML_KEY]["ros__parameters"]["mesh_rate"] = 7.5
    document[YAML_KEY]["ros__parameters"]["tracking"]["beta"] = 0.25
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document))
    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(path)])
    try:
        node = node_module.FaceExprNode(context=context, namespace="/robot/head")
        try:
            assert node.get_parameter("mesh_rate").value == 7.5
            assert node.get_parameter("tracking.beta").value == 0.25
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()


def test_docs_hold_the_generated_parameter_table(node_module):
    assert node_module.parameters_markdown() in DOC.read_text(), (
        "docs/node.md's parameter table is out of date: paste python -m face_expr_ros.ros.node "
        "--markdown")


# ---- launch file ------------------------------------------------------------------------------------

def setup_py_installed_files() -> tuple[set[str], list[str]]:
    """(repository files that setup.py's data_files install, its console_scripts)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    patterns = [node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "glob"]
    installed = {str(p.relative_to(REPO)) for pattern in patterns for p in REPO.glob(pattern)}
    scripts = [node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = " in node.value]
    return installed, scripts


def test_launch_file_parses_and_references_installed_files():
    tree = ast.parse(LAUNCH_FILE.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body)
    installed, scripts = setup_py_installed_files()
    for path in ("launch/face_expr.launch.py", "config/face_expr.yaml", "config/face_expr.rviz"):
        assert path in installed, f"setup.py does not install {path}"
    assert "face_expr_node = face_expr_ros.ros.node:main" in scripts


class Recorded:
    """Stand-in of a launch class: keeps its arguments; instances are listed per class."""

    instances: list = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        type(self).instances.append(self)

    def __repr__(self):
        return f"{type(self).__name__}{self.args}{self.kwargs}"


def recorded(name: str) -> type:
    return type(name, (Recorded,), {"instances": []})


@pytest.fixture()
def launch_stubs(monkeypatch):
    classes = {name: recorded(name) for name in (
        "LaunchDescription", "DeclareLaunchArgument", "IfCondition", "LaunchConfigurationEquals",
        "LaunchConfiguration", "PythonExpression", "Node")}
    modules = {
        "launch": ["LaunchDescription"], "launch.actions": ["DeclareLaunchArgument"],
        "launch.conditions": ["IfCondition", "LaunchConfigurationEquals"],
        "launch.substitutions": ["LaunchConfiguration", "PythonExpression"],
        "launch_ros": [], "launch_ros.actions": ["Node"],
    }
    for module_name, names in modules.items():
        module = types.ModuleType(module_name)
        for name in names:
            setattr(module, name, classes[name])
        monkeypatch.setitem(sys.modules, module_name, module)
    ament = types.ModuleType("ament_index_python.packages")
    ament.get_package_share_directory = lambda package: f"/opt/ros/share/{package}"
    monkeypatch.setitem(sys.modules, "ament_index_python", types.ModuleType("ament_index_python"))
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", ament)
    return classes


def run_launch_file():
    spec = importlib.util.spec_from_file_location("face_expr_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.generate_launch_description()


def test_launch_description_arguments_nodes_and_conditions(launch_stubs, node_module):
    module, description = run_launch_file()
    share = "/opt/ros/share/face_expr_ros"
    arguments = {a.args[0]: a.kwargs for a in launch_stubs["DeclareLaunchArgument"].instances}
    assert set(arguments) == {"image", "camera_info", "namespace", "params_file", "camera",
                              "video_device", "frame_id", "use_rviz", "rep155"}
    assert arguments["params_file"]["default_value"] == f"{share}/config/face_expr.yaml"
    assert arguments["camera"]["choices"] == ["none", "usb_cam", "v4l2_camera", "realsense"]
    assert arguments["camera"]["default_value"] == "none"
    assert arguments["use_rviz"]["default_value"] == "false"
    assert all(kwargs.get("description") for kwargs in arguments.values())

    nodes = {n.kwargs["executable"]: n.kwargs for n in launch_stubs["Node"].instances}
    face = nodes["face_expr_node"]
    assert face["package"] == "face_expr_ros" and face["name"] == "face_expr_node"
    params_file, overrides = face["parameters"]
    assert params_file.args == ("params_file",)  # LaunchConfiguration
    assert {k: v.args for k, v in overrides.items()} == {"rep155": ("rep155",)}
    assert arguments["rep155"]["default_value"] == "true"
    assert node_module.PARAMETERS_BY_NAME["rep155"].default is True
    assert [r[0] for r in face["remappings"]] == ["image", "camera_info"]
    # each camera driver only when chosen
    for executable, camera in (("usb_cam_node_exe", "usb_cam"),
                               ("v4l2_camera_node", "v4l2_camera"),
                               ("realsense2_camera_node", "realsense")):
        condition = nodes[executable]["condition"]
        assert type(condition).__name__ == "LaunchConfigurationEquals"
        assert condition.args == ("camera", camera)
    rviz = nodes["rviz2"]
    assert type(rviz["condition"]).__name__ == "IfCondition"
    assert rviz["condition"].args[0].args == ("use_rviz",)
    assert rviz["arguments"][:2] == ["-d", f"{share}/config/face_expr.rviz"]
    # every node gets the namespace argument
    assert all(n.kwargs["namespace"].args == ("namespace",) for n in launch_stubs["Node"].instances)
    # the description holds the arguments and the nodes
    (entities,) = description.args
    assert len(entities) == len(arguments) + len(nodes)


# ---- RViz -------------------------------------------------------------------------------------------

def test_rviz_config_shows_tf_mesh_and_debug_image():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    manager = config["Visualization Manager"]
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert "rviz_default_plugins/TF" in displays
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "faces/mesh"
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == "faces/debug_image"
    launch_default = next(
        n for n in ast.walk(ast.parse(LAUNCH_FILE.read_text()))
        if isinstance(n, ast.Call) and n.args and getattr(n.args[0], "value", None) == "frame_id"
        and getattr(n.func, "id", "") == "DeclareLaunchArgument")
    default = next(k.value.value for k in launch_default.keywords if k.arg == "default_value")
    assert manager["Global Options"]["Fixed Frame"] == default == "camera_optical_frame"
