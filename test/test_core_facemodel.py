"""FaceModel loading: search order, the real file's counts, and specific errors for bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from face_expr_ros.core import facemodel
from face_expr_ros.core.facemodel import FaceModelError, load_face_model, resolve_face_model_path


def tiny_arrays(n_vertices: int = 80, n_identity: int = 3, n_expr: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "neutral": rng.normal(size=(n_vertices, 3)).astype(np.float32),
        "triangles": rng.integers(0, n_vertices, size=(30, 3)).astype(np.int32),
        "identity_basis": rng.normal(size=(n_identity, n_vertices, 3)).astype(np.float32),
        "identity_names": np.array([f"identity{i:03d}" for i in range(n_identity)]),
        "expression_basis": rng.normal(size=(n_expr, n_vertices, 3)).astype(np.float32),
        "expression_names": np.array(["jawOpen", "mouthSmile_L", "mouthSmile_R", "eyeBlink_L"][:n_expr]),
        "landmarks68": np.arange(68, dtype=np.int32),
        "face_area_vertex_count": np.int32(n_vertices),
    }


def save(tmp_path: Path, arrays: dict, name: str = "model.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_real_model_has_readme_counts(face_model):
    assert face_model.n_vertices == 11248
    assert face_model.triangles.shape == (22288, 3)
    assert face_model.n_identity == 100
    assert face_model.n_expressions == 53
    assert face_model.landmarks68.shape == (68,)
    assert face_model.face_area_vertex_count == 9409
    assert "jawOpen" in face_model.expression_names and "tongueOut" not in face_model.expression_names
    # +x is the subject's left: landmark 45 (left eye outer corner) has x > 0, landmark 36 x < 0
    assert face_model.neutral[face_model.landmarks68[45], 0] > 0 > face_model.neutral[face_model.landmarks68[36], 0]


def test_explicit_path_beats_environment(tmp_path, monkeypatch):
    explicit, env = save(tmp_path, tiny_arrays(), "a.npz"), save(tmp_path, tiny_arrays(), "b.npz")
    monkeypatch.setenv(facemodel.ENV_VAR, str(env))
    assert resolve_face_model_path(explicit) == explicit
    assert resolve_face_model_path(None) == env


def test_missing_file_names_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.delenv(facemodel.ENV_VAR, raising=False)
    places = [tmp_path / "one" / "x.npz", tmp_path / "two" / "x.npz"]
    monkeypatch.setattr(facemodel, "default_search_paths", lambda: places)
    with pytest.raises(FaceModelError) as err:
        load_face_model()
    text = str(err.value)
    assert all(str(p) in text for p in places)
    assert "face_expr model build" in text and facemodel.ENV_VAR in text


def test_missing_env_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(facemodel.ENV_VAR, str(tmp_path / "nope.npz"))
    with pytest.raises(FaceModelError, match="nope.npz"):
        load_face_model()


def test_not_an_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(FaceModelError, match="not a readable .npz"):
        load_face_model(bad)


def test_truncated_npz(tmp_path):
    good = save(tmp_path, tiny_arrays())
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(FaceModelError):
        load_face_model(cut)


@pytest.mark.parametrize("key, value, expected", [
    ("neutral", np.zeros((80, 2), np.float32), "neutral has shape"),
    ("neutral", np.zeros((80, 3), np.int32), "neutral has dtype int32"),
    ("identity_basis", np.zeros((3, 79, 3), np.float32), "identity_basis has shape"),
    ("expression_basis", np.full((4, 80, 3), np.nan, np.float32), "expression_basis holds 960 NaN"),
    ("triangles", np.array([[0, 1, 80]], np.int32), "triangles indexes vertices 0..80"),
    ("landmarks68", np.arange(67, dtype=np.int32), r"landmarks68 has shape \(67,\)"),
    ("expression_names", np.array(["a", "b"]), "expression_names is <U1 \\(2,\\), expected 4 strings"),
])
def test_wrong_arrays_get_specific_errors(tmp_path, key, value, expected):
    arrays = tiny_arrays()
    arrays[key] = value
    with pytest.raises(FaceModelError, match=expected):
        load_face_model(save(tmp_path, arrays))


def test_missing_array_is_named(tmp_path):
    arrays = tiny_arrays()
    del arrays["landmarks68"]
    with pytest.raises(FaceModelError, match="missing arrays \\['landmarks68'\\]"):
        load_face_model(save(tmp_path, arrays))


def test_pickled_object_arrays_are_refused(tmp_path):
    arrays = tiny_arrays()
    arrays["expression_names"] = np.array(["jawOpen", "a", "b", "c"], dtype=object)
    with pytest.raises(FaceModelError):
        load_face_model(save(tmp_path, arrays))


def test_unknown_name_suggests_close_match(face_model):
    with pytest.raises(KeyError, match="jawOpen"):
        face_model.expression_index("jawOpn")
    assert face_model.expression_index("jawOpen") == face_model.expression_names.index("jawOpen")
