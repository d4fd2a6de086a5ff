"""Face crops: the crop->image affine is exact (round trips, a dot lands where it says)."""
import numpy as np
import pytest
from conftest import skip_or_fail

from face_expr_ros.core import align
from face_expr_ros.core.camera import apply_affine


def _landmarks(rng: np.random.Generator, centre=(150.0, 120.0), size=90.0) -> np.ndarray:
    return np.asarray(centre) + rng.uniform(-size / 2, size / 2, (68, 2))


def _blob_image(h: int, w: int, centre: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    return np.repeat(blob[..., None], 3, 2).astype(np.float32)


def _centroid(image: np.ndarray) -> np.ndarray:
    weight = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


def test_landmarks_round_trip_through_the_crop():
    rng = np.random.default_rng(0)
    landmarks = _landmarks(rng)
    image = rng.integers(0, 256, (240, 320, 3), np.uint8)
    crop = align.crop_from_landmarks(image, landmarks, size=128)
    assert crop.image.shape == (128, 128, 3) and crop.image.dtype == np.uint8
    in_crop = apply_affine(crop.image_to_crop, landmarks)
    assert in_crop.min() >= 0 and in_crop.max() <= 127  # the margin keeps every point inside
    np.testing.assert_allclose(apply_affine(crop.crop_to_image, in_crop), landmarks, atol=1e-9)
    # the landmark box fills 1 / (1 + margin) of the crop
    side = np.ptp(in_crop, axis=0).max()
    assert side == pytest.approx(128 / (1 + align.CROP_MARGIN), rel=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_a_dot_in_the_image_lands_in_the_crop_where_the_affine_says(seed):
    rng = np.random.default_rng(seed)
    box = np.array([100.0, 60.0, 200.0, 180.0]) + rng.uniform(-20, 20, 4)
    dot = rng.uniform((120, 90), (180, 150))
    crop = align.crop_from_box(_blob_image(240, 320, dot), box, size=128)
    expected = apply_affine(crop.image_to_crop, dot[None])[0]
    assert np.linalg.norm(_centroid(crop.image) - expected) < 0.2


def test_detector_box_rule_maps_to_the_landmark_box_scale():
    rule = align.BoxRule(scale=0.8, dx=0.02, dy=0.1)
    out = rule.apply((10, 20, 110, 140))  # side 120 (the height), centre (60, 80)
    np.testing.assert_allclose(out, [60 + 2.4 - 48, 80 + 12 - 48, 60 + 2.4 + 48, 80 + 12 + 48])


def test_calibrate_box_rule_recovers_a_known_rule():
    rng = np.random.default_rng(1)
    truth = align.BoxRule(scale=0.79, dx=0.01, dy=0.13)
    det = rng.uniform(0, 200, (50, 2))
    det = np.hstack((det, det + rng.uniform(40, 120, (50, 1))))  # square detector boxes
    lmk = np.array([truth.apply(b) for b in det])
    fitted = align.calibrate_box_rule(det, lmk)
    assert fitted.scale == pytest.approx(0.79) and fitted.dx == pytest.approx(0.01)
    assert fitted.dy == pytest.approx(0.13)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        align.calibrate_box_rule(det, lmk[:3])


def test_detector_box_crops_frame_helen_faces_like_landmark_crops(data_root):
    """With the calibrated rule, a real detector box frames a face as its 68 landmarks do."""
    from face_expr_ros.training.datasets import build_index, load_sample

    try:
        from face_expr_ros.core.detect import create_detector

        detector = create_detector()
    except Exception as err:  # ImportError, DetectorError
        skip_or_fail(f"face detector not available: {err}")
    index = build_index("helen_train", data_root)
    for entry in index[::290]:
        sample = load_sample(entry)
        faces = detector.detect(sample.image)
        assert faces, entry.path
        from_box = align.crop_from_box(sample.image, faces[0].box)
        from_lmk = align.crop_from_landmarks(sample.image, sample.landmarks)
        a = apply_affine(from_box.image_to_crop, sample.landmarks)
        b = apply_affine(from_lmk.image_to_crop, sample.landmarks)
        assert np.abs(a.mean(0) - b.mean(0)).max() < 10.0, entry.path  # crop pixels of 128
        assert np.ptp(a, axis=0).max() == pytest.approx(np.ptp(b, axis=0).max(), rel=0.15)


def test_landmark_side_is_the_longer_side_of_the_landmark_box():
    points = np.array([[10.0, 20.0], [40.0, 25.0], [25.0, 80.0]])
    assert align.landmark_side(points) == 60.0  # height 60 > width 30
    assert align.landmark_side(points[:, ::-1]) == 60.0  # the same box transposed


def test_framing_of_takes_the_landmark_box_to_the_framed_box_within_its_limits():
    landmarks = _landmarks(np.random.default_rng(3))
    box = align.landmark_box(landmarks)
    side = box[2] - box[0]
    framed = align.BoxRule(1.1, 0.05, -0.08).apply(box)
    rule = align.framing_of(landmarks, framed)
    np.testing.assert_allclose(rule.apply(box), framed, atol=1e-9)
    np.testing.assert_allclose(align.landmark_crop_affine(landmarks, 128, framing=rule),
                               align.crop_affine(framed, 128, align.CROP_MARGIN))
    far = align.framing_of(landmarks, box + np.array([1, 1, 1, 1]) * side)  # a whole side off
    assert far.dx == pytest.approx(align.MAX_FRAMING_SHIFT)
    assert far.dy == pytest.approx(align.MAX_FRAMING_SHIFT)
    huge = align.framing_of(landmarks, align.BoxRule(3.0, 0.0, 0.0).apply(box))
    assert huge.scale == pytest.approx(align.MAX_FRAMING_SCALE)
    tiny = align.framing_of(landmarks, align.BoxRule(0.2, 0.0, 0.0).apply(box))
    assert tiny.scale == pytest.approx(1 / align.MAX_FRAMING_SCALE)


def test_crop_from_landmarks_with_a_framing_cuts_the_framed_box():
    rng = np.random.default_rng(4)
    landmarks = _landmarks(rng)
    image = rng.integers(0, 256, (240, 320, 3), np.uint8)
    rule = align.BoxRule(1.15, -0.05, 0.1)
    framed = align.crop_from_landmarks(image, landmarks, 128, framing=rule)
    plain = align.crop_from_landmarks(image, landmarks, 128)
    boxed = align.crop_from_box(image, rule.apply(align.landmark_box(landmarks)), 128,
                                rule=align.BoxRule(1.0, 0.0, 0.0))
    np.testing.assert_allclose(framed.crop_to_image, boxed.crop_to_image, atol=1e-9)
    np.testing.assert_array_equal(framed.image, boxed.image)
    assert not np.allclose(framed.crop_to_image, plain.crop_to_image)


def test_blend_framing_moves_part_of_the_way():
    old, new = align.BoxRule(1.0, 0.0, 0.0), align.BoxRule(1.21, 0.1, -0.1)
    assert align.blend_framing(None, new, 0.5) == new
    assert align.blend_framing(old, new, 0.0) == old
    assert align.blend_framing(old, new, 1.0).scale == pytest.approx(1.21)
    half = align.blend_framing(old, new, 0.5)
    assert (half.scale, half.dx, half.dy) == pytest.approx((1.1, 0.05, -0.05))
