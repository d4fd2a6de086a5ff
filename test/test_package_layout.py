"""The package as colcon and ament see it: package.xml, setup.py's install layout, top-level entries."""
import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "face_expr_ros"
TOP_LEVEL = ["package.xml", "setup.py", "setup.cfg", "README.md", f"{PACKAGE}/", "launch/", "config/",
             "test/", "resource/", "face_expr_msgs/"]

# Top-level import name -> rosdep key, for the non-ROS libraries face_expr_ros/ may import.
# A new third-party import goes here, into package.xml and into setup.py's install_requires.
THIRD_PARTY = {
    "numpy": ("python3-numpy", "numpy"),
    "scipy": ("python3-scipy", "scipy"),
    "cv2": ("python3-opencv", "opencv-python-headless"),
    "yaml": ("python3-yaml", "PyYAML"),
    "torch": ("python3-torch", "torch"),
    "safetensors": ("python3-safetensors-pip", "safetensors"),
    "tqdm": ("python3-tqdm", "tqdm"),
    "skimage": ("python3-skimage", "scikit-image"),
    "PIL": ("python3-pil", "Pillow"),
}
# Optional features: imported only where they are used, with a clear error when missing; declared
# as a setup.py extra (installed by .ci/setup_venv.sh), not in package.xml (rosdep keys vary).
OPTIONAL = {"onnxruntime": "onnx", "onnx": "onnx", "onnxscript": "onnx", "rosbags": "bag",
            "sklearn": "eval"}
OPTIONAL_PIP_NAMES = {"sklearn": "scikit-learn"}  # where the pip name is not the module's
# Libraries only the training tools (face_expr_ros/training/) import: installed, pinned, by
# .ci/setup_venv.sh (mediapipe with --no-deps: its opencv-contrib-python would replace the headless
# cv2), not declared in package.xml: a robot running the node never needs them.
TRAINING_ONLY = {"mediapipe": "mediapipe", "dlib": "dlib-bin"}
# ROS packages without an *_msgs suffix that Python code may import.
ROS_PYTHON_PACKAGES = {"rclpy", "tf2_ros", "tf2_py", "cv_bridge", "image_transport", "launch",
                       "launch_ros", "ament_index_python", "rosidl_runtime_py", "message_filters",
                       "builtin_interfaces", "rcl_interfaces", "lifecycle_msgs"}


def parse_package_xml(path: Path):
    """(format, name, version, build_type, exec_depends) of a package.xml, validated by catkin_pkg."""
    try:
        from catkin_pkg.package import parse_package
    except ImportError:
        parse_package = None
    if parse_package is not None:
        pkg = parse_package(str(path))  # raises InvalidPackage (e.g. a bad maintainer e-mail)
        exec_deps = {d.name for d in pkg.exec_depends}
        return pkg.package_format, pkg.name, pkg.version, pkg.get_build_type(), exec_deps
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    exec_deps = {e.text.strip() for e in root.iter() if e.tag in ("exec_depend", "depend")}
    return (int(root.get("format", 1)), root.findtext("name"), root.findtext("version"),
            root.findtext("export/build_type"), exec_deps)


def setup_kwargs() -> dict:
    """The keyword arguments setup.py passes to setuptools.setup (run with setup() stubbed)."""
    import os

    import setuptools

    captured = {}
    real, setuptools.setup = setuptools.setup, lambda **kw: captured.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        exec(compile((REPO / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
    finally:
        setuptools.setup = real
        os.chdir(cwd)
    return captured


def imported_modules(root: Path):
    """{top-level module: first 'file:line'} of absolute, non-optional imports under ``root``.

    Imports inside a ``try`` whose handlers catch ImportError (or broader) are optional fallbacks
    (e.g. cv_bridge when importable) and are not required dependencies.
    """
    found = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        optional = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
                for stmt in node.body:
                    optional.update(id(n) for n in ast.walk(stmt))
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError", "Exception")
               for t in types)


def is_ros_package(module: str) -> bool:
    return module in ROS_PYTHON_PACKAGES or module.endswith(("_msgs", "_srvs", "_interfaces"))


# ---- tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", TOP_LEVEL)
def test_top_level_entry_exists(entry):
    path = REPO / entry.rstrip("/")
    assert path.is_dir() if entry.endswith("/") else path.is_file(), f"missing {entry} at the top level"


def test_package_xml_format_3_ament_python():
    fmt, name, version, build_type, exec_deps = parse_package_xml(REPO / "package.xml")
    assert (fmt, name, build_type) == (3, PACKAGE, "ament_python")
    kwargs = setup_kwargs()
    assert kwargs["name"] == PACKAGE and kwargs["version"] == version
    init = (REPO / PACKAGE / "__init__.py").read_text()
    assert f'__version__ = "{version}"' in init, "face_expr_ros.__version__ differs from package.xml"
    assert "face_expr_msgs" in exec_deps


def test_msgs_package_xml_is_an_interface_package():
    fmt, name, _, build_type, exec_deps = parse_package_xml(REPO / "face_expr_msgs" / "package.xml")
    assert (fmt, name, build_type) == (3, "face_expr_msgs", "ament_cmake")
    assert "rosidl_default_runtime" in exec_deps
    xml = (REPO / "face_expr_msgs" / "package.xml").read_text()
    assert "<member_of_group>rosidl_interface_packages</member_of_group>" in xml


def test_every_import_is_declared():
    """Each ROS package imported in face_expr_ros/ is an exec_depend; each library also a pip requirement."""
    _, _, _, _, exec_deps = parse_package_xml(REPO / "package.xml")
    requires = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower()
                for r in setup_kwargs()["install_requires"]}
    problems = []
    for module, where in sorted(imported_modules(REPO / PACKAGE).items()):
        if module == PACKAGE or module in sys.stdlib_module_names or module == "__future__":
            continue
        if is_ros_package(module):
            if module not in exec_deps:
                problems.append(f"{where}: imports ROS package {module}: add <exec_depend>{module}"
                                "</exec_depend> to package.xml")
        elif module in TRAINING_ONLY and where.startswith(f"{PACKAGE}/training/"):
            script = (REPO / ".ci" / "setup_venv.sh").read_text()
            if f"{TRAINING_ONLY[module]}==" not in script:
                problems.append(f"{where}: imports {module}: pin {TRAINING_ONLY[module]} in "
                                ".ci/setup_venv.sh (training tools)")
        elif module in OPTIONAL:
            extra = setup_kwargs()["extras_require"].get(OPTIONAL[module], [])
            pip_name = OPTIONAL_PIP_NAMES.get(module, module)
            if not any(r.lower().startswith(pip_name) for r in extra):
                problems.append(f"{where}: imports {module}: add it to the {OPTIONAL[module]!r} extra")
        elif module in THIRD_PARTY:
            key, pip_name = THIRD_PARTY[module]
            if key not in exec_deps:
                problems.append(f"{where}: imports {module}: add <exec_depend>{key}</exec_depend>")
            if pip_name.lower() not in requires:
                problems.append(f"{where}: imports {module}: add {pip_name} to install_requires")
        else:
            problems.append(f"{where}: imports {module}, unknown to this test: declare it in "
                            "package.xml and setup.py, and add it to THIRD_PARTY here")
    assert not problems, "\n".join(problems)


def test_data_files_install_what_ros_needs():
    data_files = {dest: list(srcs) for dest, srcs in setup_kwargs()["data_files"]}
    assert data_files.get("share/ament_index/resource_index/packages") == [f"resource/{PACKAGE}"]
    assert (REPO / "resource" / PACKAGE).is_file()
    assert "package.xml" in data_files.get(f"share/{PACKAGE}", [])
    launch = sorted(str(p.relative_to(REPO)) for p in (REPO / "launch").glob("*.py"))
    assert sorted(data_files.get(f"share/{PACKAGE}/launch", [])) == launch
    config = sorted(str(p.relative_to(REPO)) for p in (REPO / "config").iterdir() if p.is_file())
    assert sorted(data_files.get(f"share/{PACKAGE}/config", [])) == config, (
        "every file in config/ is installed to share/face_expr_ros/config")
    for srcs in data_files.values():
        for src in srcs:
            assert (REPO / src).is_file(), f"data_files names {src}, which does not exist"


def test_executables_install_where_ros2_run_finds_them():
    scripts = {s.split("=")[0].strip(): s.split("=")[1].strip()
               for s in setup_kwargs()["entry_points"]["console_scripts"]}
    assert scripts.get("face_expr") == "face_expr_ros.cli:main"
    assert scripts.get("face_expr_node") == "face_expr_ros.ros.node:main"
    cfg = (REPO / "setup.cfg").read_text()
    assert f"script_dir=$base/lib/{PACKAGE}" in cfg and f"install_scripts=$base/lib/{PACKAGE}" in cfg


def test_config_yaml_is_ros_params_file():
    files = sorted((REPO / "config").glob("*.yaml"))
    assert files, "config/ holds no parameters file"
    for path in files:
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict) and data, f"{path.name}: empty"
        for node, section in data.items():
            assert set(section) == {"ros__parameters"}, f"{path.name}: {node} lacks ros__parameters"
    params = yaml.safe_load((REPO / "config" / "face_expr.yaml").read_text())
    assert params["/**/face_expr_node"]["ros__parameters"]["face_model_path"] == ""


def test_colcon_skips_the_ci_standin_tf2_msgs():
    """.ci/tf2_msgs would shadow the real tf2_msgs in a robot's workspace."""
    assert (REPO / ".ci" / "COLCON_IGNORE").is_file()


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    run = (REPO / ".ci" / "run").read_text().splitlines()
    (command,) = [line.strip() for line in run if line.startswith("bash .ci/setup_venv.sh")]
    assert "pytest" in command, ".ci/run runs the test command"
    assert command in readme, f"README.md does not show the command CI runs: {command}"


def test_ci_runs_the_readme_first_command_in_a_fresh_clone():
    """The README's first command, in a clone with no ../shared beside it (the packaged model)."""
    readme = (REPO / "README.md").read_text()
    first = re.search(r"```bash\n(.+?)\n```", readme).group(1).strip()
    assert first == "bash .ci/setup_venv.sh && .venv/bin/face_expr demo"
    run = (REPO / ".ci" / "run").read_text()
    clone = run.index('git clone -q "$PWD" "$fresh/face_expr_ros"')
    assert run.index("mktemp -d") < clone < run.index(first)
    assert 'XDG_DATA_HOME="$fresh/data"' in run and "unset FACE_EXPR_FACE_MODEL" in run
