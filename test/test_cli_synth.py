"""``face_expr synth`` and ``face_expr model build`` end to end, and the atomic file writers."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from face_expr_ros import cli
from face_expr_ros.core import export

FAST = ["--size", "96", "--supersample", "1"]


def synth(face_model, *args: str) -> int:
    return cli.main(["synth", "--face-model", face_model.path, *FAST, *args])


def obj_counts(path) -> tuple[int, int]:
    lines = path.read_text().splitlines()
    return sum(ln.startswith("v ") for ln in lines), sum(ln.startswith("f ") for ln in lines)


def test_synth_writes_image_and_mesh(face_model, tmp_path, capsys):
    image, mesh = tmp_path / "face.png", tmp_path / "face.obj"
    rc = synth(face_model, "--expression", "jawOpen=0.8", "mouthSmile_L=0.5", "--yaw", "30",
               "-o", str(image), "--mesh", str(mesh))
    assert rc == 0
    rgb = cv2.imread(str(image))
    assert rgb.shape == (96, 96, 3)
    assert rgb.max() > 100  # a face was drawn
    assert obj_counts(mesh) == (face_model.n_vertices, len(face_model.triangles))
    out = capsys.readouterr().out
    assert str(image) in out and "jawOpen=0.80" in out and "mouthSmile_L=0.50" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.obj", "face.png"]  # no temporaries


def test_synth_face_region_mesh(face_model, tmp_path):
    mesh = tmp_path / "face.obj"
    assert synth(face_model, "--region", "face", "-o", str(tmp_path / "f.png"), "--mesh", str(mesh)) == 0
    n_tris = int((face_model.triangles < face_model.face_area_vertex_count).all(axis=1).sum())
    assert obj_counts(mesh) == (face_model.face_area_vertex_count, n_tris)


def test_unknown_expression_suggests_and_writes_nothing(face_model, tmp_path, capsys):
    image = tmp_path / "face.png"
    rc = synth(face_model, "--expression", "jawOpn=0.8", "-o", str(image), "--mesh",
               str(tmp_path / "face.obj"))
    assert rc == 2
    err = capsys.readouterr().err
    assert "jawOpn" in err and "jawOpen" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pair", ["jawOpen=1.5", "jawOpen=-0.1", "jawOpen=nan", "jawOpen", "jawOpen=x"])
def test_bad_expression_value_is_rejected(face_model, tmp_path, capsys, pair):
    rc = synth(face_model, "--expression", pair, "-o", str(tmp_path / "face.png"))
    assert rc == 2
    assert "--expression" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_landmarks_and_background(face_model, tmp_path):
    background = np.zeros((60, 80, 3), np.uint8)
    background[..., 0] = 255  # red in RGB
    cv2.imwrite(str(tmp_path / "bg.png"), background[..., ::-1])
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    args = ["--background", str(tmp_path / "bg.png"), "--supersample", "1"]
    assert cli.main(["synth", "--face-model", face_model.path, *args, "-o", str(plain)]) == 0
    assert cli.main(["synth", "--face-model", face_model.path, *args, "--landmarks",
                     "-o", str(marked)]) == 0
    a, b = cv2.imread(str(plain)), cv2.imread(str(marked))
    assert a.shape == (60, 80, 3)  # the background's size
    assert a[0, 0].tolist() == [0, 0, 255]  # BGR on disk: RGB red is kept red
    assert (a != b).any()


def test_unwritable_folder_fails_before_work(face_model, tmp_path, capsys):
    assert synth(face_model, "-o", str(tmp_path / "missing" / "face.png")) == 1
    assert "does not exist" in capsys.readouterr().err
    assert synth(face_model, "-o", str(tmp_path / "face.gif")) == 2


def test_help_works_without_ros_or_heavy_imports():
    heavy = ("rclpy", "torch", "cv2", "mediapipe", "dlib", "scipy")
    code = ("import sys; from face_expr_ros.cli import main; rc = main(['--help']); "
            f"loaded = [m for m in {heavy!r} if m in sys.modules]; "
            "assert not loaded, loaded; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "synth" in done.stdout and "model" in done.stdout


def test_model_build_calls_the_converter(tmp_path, monkeypatch, capsys):
    from face_expr_ros.core import convert

    calls = []

    def fake_build(src_dir, out_path, compact=False):
        calls.append((src_dir, out_path, compact))
        out_path.write_bytes(b"npz")
        return out_path

    monkeypatch.setattr(convert, "build_face_model", fake_build)
    out = tmp_path / "m.npz"
    assert cli.main(["model", "build", str(tmp_path), "-o", str(out)]) == 0
    assert cli.main(["model", "build", str(tmp_path), "-o", str(out), "--compact"]) == 0
    assert calls == [(tmp_path, out, False), (tmp_path, out, True)]
    assert str(out) in capsys.readouterr().out


def test_model_build_reports_a_bad_folder(tmp_path, capsys):
    assert cli.main(["model", "build", str(tmp_path / "nothing"), "-o", str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("face_expr model build: error:") and "nothing" in err


def test_model_without_action_shows_help(capsys):
    assert cli.main(["model"]) == 2
    assert "build" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Atomic writers
# ---------------------------------------------------------------------------------------------
def test_write_obj_round_trip(tmp_path):
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.5, -2.0]])
    path = export.write_obj(tmp_path / "t.obj", vertices, np.array([[0, 1, 2]]))
    lines = path.read_text().splitlines()
    assert "f 1 2 3" in lines and "v 0.000000 1.500000 -2.000000" in lines


def test_write_image_permissions_and_no_temporaries(tmp_path):
    path = export.write_image(tmp_path / "a.png", np.zeros((4, 5, 3), np.uint8))
    assert cv2.imread(str(path)).shape == (4, 5, 3)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_write_to_missing_or_readonly_folder_is_clear(tmp_path, monkeypatch):
    with pytest.raises(export.ExportError, match="does not exist"):
        export.write_image(tmp_path / "no" / "a.png", np.zeros((4, 4, 3), np.uint8))
    # /proc takes no new files, for root too: the OS error becomes a one-line ExportError
    with pytest.raises(export.ExportError, match="cannot write /proc/face_expr_test.obj"):
        export.write_obj("/proc/face_expr_test.obj", np.zeros((3, 3)), np.array([[0, 1, 2]]))
    # a folder without write permission (what a non-root user sees) is caught before any work
    monkeypatch.setattr(export.os, "access", lambda *_args, **_kw: False)
    with pytest.raises(export.ExportError, match="not writable"):
        export.write_obj(tmp_path / "m.obj", np.zeros((3, 3)), np.array([[0, 1, 2]]))
    assert list(tmp_path.iterdir()) == []
