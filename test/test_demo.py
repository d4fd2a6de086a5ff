"""``face_expr demo`` end to end: the real node, real topics, the example frames (docs/demo.md).

The contract, independent of how well the network is trained: every frame is answered, the face
detector (independent of the network) finds 0 faces in the no-face frame and 2 in the two-face
frame, and the overlays are written. Weights: $FACE_EXPR_WEIGHTS, else the package's, else a
randomly initialised network (the contract holds for any weights).
"""
import os
import re
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from face_expr_ros.core.camera import euler_to_matrix, face_frame_rotation, matrix_to_quaternion

pytest.importorskip("skimage", reason="the demo's example image comes from scikit-image")


def test_example_frames_have_the_faces_they_claim():
    from face_expr_ros.core.detect import create_detector
    from face_expr_ros.offline.examples import EXPECTED_FACES, example_frames

    frames = example_frames()
    assert list(frames) == list(EXPECTED_FACES)
    detector = create_detector()
    for name, rgb in frames.items():
        assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
        assert len(detector.detect(rgb)) == EXPECTED_FACES[name], name


@pytest.mark.parametrize("ypr", [(0, 0, 0), (20, -10, 15), (-35, 25, -40)])
def test_head_pose_back_to_core_euler(ypr):
    """The demo reads yaw/pitch/roll back from the published face_<id> orientation."""
    from face_expr_ros.ros.demo import pose_to_core_rotation

    R = euler_to_matrix(*ypr)
    x, y, z, w = matrix_to_quaternion(face_frame_rotation(R))
    back = pose_to_core_rotation(SimpleNamespace(x=x, y=y, z=z, w=w))
    np.testing.assert_allclose(back, R, atol=1e-9)


def _weights(tmp_path):
    from face_expr_ros.core.weights import PACKAGE_WEIGHTS, save_weights

    env = os.environ.get("FACE_EXPR_WEIGHTS")
    if env and os.path.isfile(env):
        return env
    if PACKAGE_WEIGHTS.is_file():
        return str(PACKAGE_WEIGHTS)
    import torch

    from face_expr_ros.core.network import FaceNet

    torch.manual_seed(0)
    return str(save_weights(tmp_path / "random_init.safetensors", FaceNet()))


def run_demo(cmd: list[str], timeout: float, domain: int) -> subprocess.CompletedProcess:
    """Run the demo CLI in its own process group; past ``timeout`` the whole group (the demo and
    the node it started) is killed, so a starved run leaves no node behind, then it fails."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True,
                          env={**os.environ, "ROS_DOMAIN_ID": str(domain)}) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"the demo did not end within {timeout} s:\n{stdout}{stderr}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_demo_end_to_end(ros_env, face_model, tmp_path):
    out = tmp_path / "overlays"
    cmd = [sys.executable, "-m", "face_expr_ros.cli", "demo", "--out", str(out),
           "--weights", _weights(tmp_path), "--timeout", "50"]
    run = run_demo(cmd, timeout=58, domain=ros_env)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text
    assert f"ROS_DOMAIN_ID={ros_env}" in text
    assert "all 6 frames answered" in text
    rows = {m.group(1): int(m.group(2))
            for m in re.finditer(r"^\| (\w[\w.]*)\s+\| (\d+)", run.stdout, re.MULTILINE)}
    assert rows == {"frontal": rows["frontal"], "shifted": rows["shifted"],
                    "rotated_15": rows["rotated_15"], "scaled_0.5": rows["scaled_0.5"],
                    "two_faces": 2, "no_face": 0}, run.stdout
    for name in ("frontal", "two_faces", "no_face", "overview"):
        assert (out / f"demo_{name}.png").stat().st_size > 10_000, name


def test_demo_reports_a_node_that_fails(ros_env, tmp_path):
    """Weights that are not weights: the node's configure fails and the demo says why."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    run = run_demo([sys.executable, "-m", "face_expr_ros.cli", "demo", "--no-overlays",
                    "--weights", str(bad), "--timeout", "40"], timeout=55, domain=ros_env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "face_expr demo: error:" in run.stderr
    assert "bad.safetensors" in run.stderr  # the node's own message, from its log tail


def test_node_log_tail_after_stop(tmp_path):
    """The failure report reads the node's log after stopping it (a closed log must not raise)."""
    from face_expr_ros.ros.demo import NodeProcess

    script = tmp_path / "talker.py"
    script.write_text("print('configure failed: bad weights', flush=True)\n")
    node = NodeProcess(str(script), "/x", log_dir=tmp_path)
    node.process.wait(timeout=30)
    node.stop()
    assert "configure failed: bad weights" in node.log_tail()
    node.remove_log()
