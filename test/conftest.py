"""Shared fixtures.

A missing prerequisite (face model, rclpy, the built messages) skips the tests that need it, with the
reason and the fix. Under CI=true everything is installed by .ci/run, so there it fails instead:
a CI run that silently skips is not a passing CI run.
"""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP_HINT = "build it with `bash .ci/setup_venv.sh` (README, \"Tests\")"


def pytest_configure(config) -> None:
    """Caches (the ONNX export of each set of weights, core.onnx_backend) go to a folder of this
    test run, inherited by node subprocesses: tests neither read a user's cache nor write to it."""
    config._face_expr_cache = tempfile.mkdtemp(prefix="face_expr_test_cache_")
    os.environ["XDG_CACHE_HOME"] = config._face_expr_cache


def pytest_unconfigure(config) -> None:
    shutil.rmtree(getattr(config, "_face_expr_cache", ""), ignore_errors=True)


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; fail under CI=true, where nothing may be missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def face_model():
    """The compact ICT face model, loaded once per session (see core.facemodel's search order)."""
    from face_expr_ros.core.facemodel import FaceModelError, load_face_model

    try:
        return load_face_model()
    except FaceModelError as err:
        skip_or_fail(f"face model not available: {err}")


def ros_domain_id() -> int:
    """A domain per test run, in 1..100 (0 is everyone's default; ROS recommends 0..101)."""
    return os.getpid() % 100 + 1


@pytest.fixture(scope="session")
def ros_env():
    """Keep DDS on the loopback in our own domain; skip or fail if ROS 2 or our messages are missing.

    Sets the variables in os.environ before any rclpy.init, so subprocesses inherit them.
    Returns the ROS_DOMAIN_ID in use.
    """
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(ros_domain_id())
    for module, what in (("rclpy", "rclpy (ROS 2)"),
                         ("face_expr_msgs.msg", "face_expr_msgs (this repository's messages)"),
                         ("tf2_msgs.msg", "tf2_msgs (apt ROS 2, or the stand-in in .ci/tf2_msgs)")):
        try:
            __import__(module)
        except ImportError as err:
            skip_or_fail(f"{what} is not importable ({err}); {SETUP_HINT}")
    return int(os.environ["ROS_DOMAIN_ID"])


@pytest.fixture(scope="session")
def hri_env(ros_env):
    """ros_env plus hri_msgs (REP-155): a robot's ros-$ROS_DISTRO-hri-msgs, or the venv's stand-in."""
    try:
        import hri_msgs.msg  # noqa: F401
    except ImportError as err:
        skip_or_fail(f"hri_msgs is not importable ({err}); {SETUP_HINT} (it builds the stand-in "
                     ".ci/hri_msgs); a robot has ros-$ROS_DISTRO-hri-msgs")
    return ros_env


@pytest.fixture(scope="session")
def data_root():
    """../shared/data (or $FACE_EXPR_DATA): the development images and labels."""
    from face_expr_ros.data_paths import data_root as find

    try:
        return find()
    except FileNotFoundError as err:
        skip_or_fail(f"training data not available: {err}")


@contextmanager
def rclpy_node(name: str):
    """(node, executor) in a private rclpy context, shut down afterwards (use after ros_env)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
