"""JPEG decoded at a reduced size (core.reduced_image, core.image_msgs.decode_compressed) and the
tracking mode's use of it: the same faces, in full-image pixels, as from the full decode."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from face_expr_ros.core.face_crops import aligned_crop, padded_crop
from face_expr_ros.core.image_msgs import ImageConversionError, decode_compressed, jpeg_size
from face_expr_ros.core.reconstruct import Reconstructor
from face_expr_ros.core.reduced_image import ReducedImage, image_size, reduction_for
from face_expr_ros.offline.examples import ASTRONAUT_FACE, faces_frame


def jpeg(rgb: np.ndarray, progressive: int = 0) -> SimpleNamespace:
    params = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_PROGRESSIVE, progressive]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    assert ok
    return SimpleNamespace(format="jpeg", data=data.tobytes())


def spot(width: int, height: int, x: float, y: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    g = 250.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 5.0 ** 2))
    return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)


@pytest.mark.parametrize("size", [(1280, 720), (641, 363), (99, 57)])
@pytest.mark.parametrize("progressive", [0, 1])
def test_jpeg_size_reads_the_frame_header(size, progressive):
    msg = jpeg(np.zeros((size[1], size[0], 3), np.uint8), progressive)
    assert jpeg_size(np.frombuffer(msg.data, np.uint8)) == size


def test_jpeg_size_is_none_for_other_data():
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1]
    assert jpeg_size(png) is None
    assert jpeg_size(np.frombuffer(b"\xff\xd8\xff\xda\x00\x02", np.uint8)) is None  # scan first
    assert jpeg_size(np.frombuffer(b"\xff\xd8", np.uint8)) is None


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_reduced_pixels_map_to_full_image_pixels(factor):
    """A spot's centroid in the reduced pixels, mapped by ``to_image``, is where it was drawn."""
    width, height, x, y = 643, 365, 301.0, 200.0
    frame = decode_compressed(jpeg(spot(width, height, x, y)), reduction=lambda w, h: factor)
    assert (frame.factor, frame.width, frame.height) == (factor, width, height)
    assert frame.pixels.shape == (-(-height // factor), -(-width // factor), 3)
    g = frame.pixels[..., 1].astype(np.float64)
    rows, cols = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    centroid = np.array([(cols * g).sum(), (rows * g).sum()]) / g.sum()
    mapped = frame.to_image[:, :2] @ centroid + frame.to_image[:, 2]
    np.testing.assert_allclose(mapped, [x, y], atol=0.1)


def test_decode_checks_the_full_size_and_the_factor():
    msg = jpeg(np.zeros((720, 1280, 3), np.uint8))
    with pytest.raises(ImageConversionError, match="exceeds max_pixels"):
        decode_compressed(msg, max_pixels=1280 * 720 - 1, reduction=lambda w, h: 2)
    with pytest.raises(ValueError, match="not one of"):
        decode_compressed(msg, reduction=lambda w, h: 3)
    png = SimpleNamespace(format="png", data=cv2.imencode(".png", np.zeros((64, 80, 3), np.uint8))[1].tobytes())
    asked = []
    frame = decode_compressed(png, reduction=lambda w, h: asked.append((w, h)) or 2)
    assert frame.factor == 1 and image_size(frame) == (80, 64) and not asked, "PNG: full size"
    with pytest.raises(ValueError, match="expected"):
        ReducedImage(np.zeros((10, 10, 3), np.uint8), 2, 40, 20)
    with pytest.raises(ValueError, match="uint8"):
        ReducedImage(np.zeros((10, 20, 3), np.float32), 2, 40, 20)


def test_reduction_rule_keeps_detector_and_crop_resolution():
    assert reduction_for(1280, 720, 640, []) == 2, "the detector downscales 1280 to 640 anyway"
    assert reduction_for(1920, 1080, 640, []) == 2, "1/4 would give the detector 480 < 640"
    assert reduction_for(2560, 1440, 640, [4.5]) == 4
    assert reduction_for(2560, 1440, 640, [4.5, 1.8]) == 1, "a small face needs every pixel"
    assert reduction_for(2560, 1440, 640, [3.0]) == 2
    assert reduction_for(640, 480, 640, []) == 1
    assert reduction_for(2560, 1440, 640, [], max_factor=2) == 2


@pytest.fixture(scope="module")
def large_face_msg() -> SimpleNamespace:
    return jpeg(faces_frame(1280, 720, 1, crop=ASTRONAUT_FACE))


def follow(face_model, msg, reduced: bool, frames: int = 6):
    rec = Reconstructor(face_model=face_model, device="cpu", backend="torch", follow=True,
                        detector_max_side=640)
    out = []
    for k in range(frames):
        frame = decode_compressed(msg, reduction=rec.reduction_for if reduced else None)
        faces = rec.reconstruct(frame, k / 30.0)
        out.append((frame.factor, faces))
    return rec, out


def test_tracking_on_reduced_frames_gives_the_full_decode_faces(face_model, large_face_msg):
    _, full = follow(face_model, large_face_msg, reduced=False)
    rec, reduced = follow(face_model, large_face_msg, reduced=True)
    assert [f for f, _ in full] == [1] * 6
    assert [f for f, _ in reduced] == [2] * 6, "a ~300 px face at 720p: every frame at 1/2"
    for (_, a), (_, b) in list(zip(full, reduced))[1:]:
        assert len(a) == len(b) == 1
        iod = np.linalg.norm(a[0].landmarks[36] - a[0].landmarks[45])
        error = np.linalg.norm(a[0].landmarks - b[0].landmarks, axis=1).mean() / iod
        assert error < 0.01, f"landmarks moved {100 * error:.2f} % of the eye distance"
        np.testing.assert_allclose(a[0].box, b[0].box, atol=4.0)
        assert a[0].id == b[0].id
    small = cv2.resize(faces_frame(1280, 720, 1, crop=ASTRONAUT_FACE), (320, 180))
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    canvas[270:450, 480:800] = small  # the same face, 4x smaller: ~75 px
    _, small_run = follow(face_model, jpeg(canvas), reduced=True, frames=4)
    assert [f for f, _ in small_run][1:] == [1, 1, 1], "a small followed face: full decodes"


def test_rep155_crops_of_a_reduced_frame_match_the_full_frame(large_face_msg):
    """cropped / aligned (core.face_crops) from reduced pixels: the full frame's image and affine."""
    full = decode_compressed(large_face_msg)
    half = decode_compressed(large_face_msg, reduction=lambda w, h: 2)
    x0, y0, x1, y1 = ASTRONAUT_FACE
    roi = (x0 + 400, y0 + 100, x1 - x0, y1 - y0)  # somewhere in the frame, face-sized (170 px)
    landmarks = np.random.default_rng(0).uniform([roi[0], roi[1]], [roi[0] + roi[2], roi[1] + roi[3]],
                                                 (68, 2))
    for crop in (lambda im: padded_crop(im, roi, (128, 128)),
                 lambda im: aligned_crop(im, roi, landmarks, (128, 128))):
        (a, affine_a), (b, affine_b) = crop(full.pixels), crop(half)
        np.testing.assert_allclose(affine_a, affine_b)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4.0
        wrong, _ = crop(half.pixels)  # the reduced pixels read as if full size: another place
        assert np.abs(a.astype(int) - wrong.astype(int)).mean() > 4 * np.abs(a.astype(int) - b.astype(int)).mean()


def test_still_image_mode_never_reduces(face_model):
    rec = Reconstructor(face_model=face_model, device="cpu", backend="torch")
    assert rec.reduction_for(3840, 2160) == 1
