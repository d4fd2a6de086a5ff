"""Reconstructor: the inference flow on real face images, without ROS."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_expr_ros.core import camera
from face_expr_ros.core.network import FaceNet, NetworkConfig
from face_expr_ros.core.reconstruct import Reconstructor
from face_expr_ros.core.tracking import Tracker
from face_expr_ros.core.weights import save_weights
from face_expr_ros.training.datasets import build_index, load_image_rgb
from conftest import skip_or_fail


@pytest.fixture(scope="module")
def helen(data_root):
    entries = build_index("helen_train", data_root)[:3]
    return [(load_image_rgb(e.path), e.landmarks) for e in entries]


@pytest.fixture(scope="module")
def reconstructor(tmp_path_factory, face_model):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    save_weights(path, FaceNet(NetworkConfig(width=0.25, feature_dim=64, n_identity=10)))
    return Reconstructor(weights=path, face_model=face_model, device="cpu")


def frame_with(faces: list[np.ndarray], size=(480, 640)) -> np.ndarray:
    frame = np.full(size + (3,), 90, np.uint8)
    for i, face in enumerate(faces):
        h, w = face.shape[:2]
        x = 20 + i * (w + 40)
        frame[100:100 + h, x:x + w] = face
    return frame


def test_two_faces_batched_sorted_and_in_image_pixels(reconstructor, helen):
    small = helen[1][0][::2, ::2]  # 128 px: a smaller face
    frame = frame_with([small, helen[0][0]])
    faces = reconstructor.reconstruct(frame)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area, "largest first"
    for face in faces:
        assert face.coefficients.shape == (53,) and len(face.names) == 53
        assert ((face.coefficients >= 0) & (face.coefficients <= 1)).all()
        assert 1 <= len(face.selected) <= 53
        assert face.landmarks.shape == (68, 2)
        x0, y0, x1, y1 = face.box
        centre = face.landmarks.mean(axis=0)
        assert x0 - 30 < centre[0] < x1 + 30 and y0 - 30 < centre[1] < y1 + 30
        np.testing.assert_allclose(face.rotation @ face.rotation.T, np.eye(3), atol=1e-5)
        vertices = face.image_vertices()
        assert vertices.shape == (face.model.n_vertices, 3)
    assert reconstructor.timings.network > 0 and reconstructor.timings.detect > 0


def test_no_face_gives_an_empty_list(reconstructor):
    assert reconstructor.reconstruct(np.full((240, 320, 3), 128, np.uint8)) == []


def test_optical_pose_is_metric_and_consistent(reconstructor, helen):
    face = reconstructor.reconstruct(frame_with([helen[0][0]]))[0]
    K = camera.default_camera_matrix(640, 480)
    pose = face.optical_pose(K)
    assert pose.position[2] > 0, "in front of the camera"
    u, v = face.landmarks[27]
    projected = camera.project_pinhole(pose.position[None], K)[0]
    np.testing.assert_allclose(projected, [u, v], atol=1e-6)
    mesh = face.optical_vertices(K)
    assert np.ptp(mesh[:, 0]) < 0.5, "a face in metres, not centimetres"


def test_precomputed_vertices_and_pose_give_the_same_meshes(reconstructor, helen):
    """The node synthesises model_vertices once per face and passes it (and the pose) on."""
    face = reconstructor.reconstruct(frame_with([helen[0][0]]))[0]
    K = camera.default_camera_matrix(640, 480)
    vertices = face.model_vertices()
    pose = face.optical_pose(K)
    np.testing.assert_array_equal(face.image_vertices(vertices), face.image_vertices())
    np.testing.assert_array_equal(face.optical_vertices(K, vertices, pose=pose),
                                  face.optical_vertices(K))
    np.testing.assert_array_equal(face.optical_vertices(K, pose=pose), face.optical_vertices(K))
    # image pixels: u = x + tx, v = ty - y (y up -> y down), z kept, from s R V
    posed = camera.pose_points(vertices, face.rotation, np.zeros(3), face.scale)
    tx, ty = face.translation
    np.testing.assert_array_equal(
        face.image_vertices(vertices), np.column_stack((posed[:, 0] + tx, ty - posed[:, 1],
                                                        posed[:, 2])))
    # the arguments are used, not recomputed
    np.testing.assert_array_equal(face.image_vertices(np.zeros_like(vertices)),
                                  np.tile([tx, ty, 0.0], (len(vertices), 1)))
    offset = np.array([0.1, -0.2, 0.3])
    moved = type(pose)(pose.position + offset, pose.face_rotation, pose.gaze_rotation,
                       pose.model_rotation)
    np.testing.assert_allclose(face.optical_vertices(K, vertices, pose=moved),
                               face.optical_vertices(K) + offset, atol=1e-12)


def test_tracker_gives_stable_ids(face_model, reconstructor, helen):
    reconstructor.tracker = Tracker(min_hits=1)
    try:
        ids = []
        for shift in range(4):
            frame = np.roll(frame_with([helen[0][0]]), 2 * shift, axis=1)
            faces = reconstructor.reconstruct(frame, timestamp=shift / 10)
            ids.append([f.id for f in faces])
        assert ids == [["f1"]] * 4
    finally:
        reconstructor.tracker = None


def test_gray_and_bad_input(reconstructor, helen):
    gray = frame_with([helen[0][0]])[..., 1]
    assert len(reconstructor.reconstruct(gray)) == 1
    with pytest.raises(TypeError):
        reconstructor.reconstruct(np.zeros((10, 10, 3), np.float32))


def test_auto_device_and_missing_gpu(face_model, tmp_path):
    from face_expr_ros.core.reconstruct import pick_device

    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no GPU"):
            pick_device("cuda")


def test_configure_changes_the_next_reconstruction(face_model, tmp_path):
    from face_expr_ros.offline.examples import faces_frame

    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_weights(path, FaceNet(NetworkConfig(width=0.25, feature_dim=64, n_identity=10)))
    rec = Reconstructor(weights=path, face_model=face_model, device="cpu", backend="torch",
                        detector_max_side=640)
    assert rec.detector.max_side == 640
    frame = faces_frame(640, 480, 2)
    assert len(rec.reconstruct(frame)) == 2
    rec.configure(max_faces=1)
    assert len(rec.reconstruct(frame)) == 1
    rec.configure(max_faces=5, detection_threshold=0.999)
    assert rec.reconstruct(frame) == []
    rec.configure(detection_threshold=0.5, top_k=1, selection_threshold=0.0)
    faces = rec.reconstruct(frame)
    assert len(faces) == 2 and all(len(f.selected) == 1 for f in faces)
    rec.configure(top_k=0, min_face_px=1000)
    assert rec.top_k is None and rec.reconstruct(frame) == []


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_presence_and_emotion_come_from_the_heads(face_model, helen, tmp_path, backend):
    """Weights with the heads fill Face.presence and Face.emotion (both backends); without, None."""
    if backend == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            skip_or_fail(f"onnxruntime is not importable ({err}); pip install -e '.[onnx]'")
    from face_expr_ros.core.emotions import EMOTIONS

    torch.manual_seed(0)
    path = tmp_path / "heads.safetensors"
    save_weights(path, FaceNet(NetworkConfig(width=0.25, feature_dim=64, n_identity=10,
                                             emotion_head=True, presence_head=True)))
    with_heads = Reconstructor(weights=path, face_model=face_model, device="cpu", backend=backend)
    (face,) = with_heads.reconstruct(helen[0][0])
    assert 0.0 <= face.presence <= 1.0 and isinstance(face.presence, float)
    assert face.emotion.shape == (len(EMOTIONS),) and abs(face.emotion.sum() - 1) < 1e-5
    assert (face.emotion >= 0).all()
    plain = tmp_path / "plain.safetensors"
    save_weights(plain, FaceNet(NetworkConfig(width=0.25, feature_dim=64, n_identity=10)))
    (face,) = Reconstructor(weights=plain, face_model=face_model, device="cpu",
                            backend=backend).reconstruct(helen[0][0])
    assert face.presence is None and face.emotion is None
