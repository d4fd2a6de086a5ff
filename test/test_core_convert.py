"""`face_expr model build`: an ICT-FaceKit-format folder the test writes itself -> npz -> FaceModel."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from face_expr_ros.core.convert import build_face_model, read_obj
from face_expr_ros.core.facemodel import FaceModelError, load_face_model

N_VERTICES = 90  # the last 10 are "eyes": dropped with keep_vertices=80


def write_obj(path: Path, vertices: np.ndarray, quads: np.ndarray) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += ["vt 0.5 0.5"]
    lines += ["f " + " ".join(f"{i + 1}/1" for i in quad) for quad in quads]
    path.write_text("# test mesh\n" + "\n".join(lines) + "\n")


def make_ict_folder(root: Path, n_identity: int = 3, expressions=("jawOpen", "mouthSmile_L")) -> dict:
    rng = np.random.default_rng(1)
    neutral = rng.normal(size=(N_VERTICES, 3))
    quads = np.array([[i, i + 1, i + 11, i + 10] for i in range(0, 69)])  # all below vertex 80
    quads = np.vstack([quads, [[80, 81, 82, 83]]])  # a quad among dropped vertices
    write_obj(root / "generic_neutral_mesh.obj", neutral, quads)
    offsets = {}
    for name in [f"identity{i:03d}" for i in range(n_identity)] + list(expressions):
        offsets[name] = rng.normal(size=(N_VERTICES, 3)) * 0.1
        write_obj(root / f"{name}.obj", neutral + offsets[name], quads)
    config = {"expressions": list(expressions), "idx_to_landmark_verts": list(range(68)),
              "idx_to_fitting_verts": [1, 2, 85]}
    (root / "vertex_indices.json").write_text(json.dumps(config))
    return {"neutral": neutral, "offsets": offsets, "quads": quads}


def test_read_obj_splits_quads_and_is_zero_based(tmp_path):
    write_obj(tmp_path / "q.obj", np.eye(4, 3), np.array([[0, 1, 2, 3]]))
    vertices, triangles = read_obj(tmp_path / "q.obj")
    assert vertices.shape == (4, 3)
    np.testing.assert_array_equal(triangles, [[0, 1, 2], [0, 2, 3]])


def test_build_from_ict_folder(tmp_path):
    src = tmp_path / "FaceXModel"
    src.mkdir()
    truth = make_ict_folder(src)
    out = build_face_model(src, tmp_path / "out" / "model.npz", keep_vertices=80, face_area_vertices=70)
    model = load_face_model(out)
    assert model.n_vertices == 80 and model.n_identity == 3 and model.n_expressions == 2
    assert model.expression_names == ("jawOpen", "mouthSmile_L")
    assert model.identity_names == ("identity000", "identity001", "identity002")
    assert model.face_area_vertex_count == 70
    np.testing.assert_allclose(model.neutral, truth["neutral"][:80], atol=1e-5)
    np.testing.assert_allclose(model.expression_basis[0], truth["offsets"]["jawOpen"][:80], atol=1e-5)
    np.testing.assert_allclose(model.identity_basis[2], truth["offsets"]["identity002"][:80], atol=1e-5)
    assert model.triangles.shape == (138, 3)  # 69 quads kept, the quad over dropped vertices gone
    assert model.triangles.max() < 80
    assert [p.name for p in out.parent.iterdir()] == ["model.npz"], "no temporary file left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not a temporary's 0600


def test_missing_expression_obj_is_named(tmp_path):
    make_ict_folder(tmp_path)
    (tmp_path / "mouthSmile_L.obj").unlink()
    with pytest.raises(FaceModelError, match="mouthSmile_L.obj missing"):
        build_face_model(tmp_path, tmp_path / "m.npz", keep_vertices=80)
    assert not (tmp_path / "m.npz").exists()


def test_not_an_ict_folder(tmp_path):
    with pytest.raises(FaceModelError, match="vertex_indices.json missing"):
        build_face_model(tmp_path, tmp_path / "m.npz")


def test_vertex_count_mismatch(tmp_path):
    make_ict_folder(tmp_path)
    write_obj(tmp_path / "identity001.obj", np.zeros((5, 3)), np.array([[0, 1, 2, 3]]))
    with pytest.raises(FaceModelError, match="identity001.obj: 5 vertices"):
        build_face_model(tmp_path, tmp_path / "m.npz", keep_vertices=80)
