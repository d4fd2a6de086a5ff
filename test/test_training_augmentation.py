"""Augmentation: the 2x3 matrix says where pixels go (to 0.2 px), flips keep left as left,
photometric operations keep the image format."""
import cv2
import numpy as np
import pytest
import torch

from face_expr_ros.core.align import warp_crop
from face_expr_ros.training import augmentation as aug

SIZE = 128


def _blob(size: int, centre: np.ndarray, sigma: float = 1.6) -> np.ndarray:
    """(size, size) float32 Gaussian blob centred at sub-pixel ``centre`` (x, y)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def _centroid(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    weight = image.astype(np.float64)
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


def _frontal_landmarks() -> np.ndarray:
    """(68, 2) a left/right symmetric layout: the lower index of a mirror pair on the image's left
    (iBUG: point 0 and the subject's right eye 36-41 appear on the image's left)."""
    pts = np.zeros((68, 2))
    for k in range(68):
        partner = aug.FLIP_PERMUTATION_68[k]
        offset = 0.0 if partner == k else 10 + 2.0 * min(k, partner) % 30
        pts[k] = (64 - offset if k < partner else 64 + offset if k > partner else 64, 30 + k)
    return pts


def test_flip_permutation_is_a_mirror_involution():
    perm = aug.FLIP_PERMUTATION_68
    assert sorted(perm) == list(range(68))
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[39] == 42 and perm[0] == 16 and perm[48] == 54
    assert all(perm[k] == k for k in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66))


@pytest.mark.parametrize("seed", range(12))
def test_a_dot_lands_where_the_affine_says(seed):
    rng = np.random.default_rng(seed)
    point = rng.uniform(40, 88, 2)
    affine, flipped = aug.random_affine(rng, (SIZE, SIZE), SIZE)
    warped = warp_crop(_blob(SIZE, point), affine, SIZE)
    expected = aug.transform_landmarks(affine, point[None], flipped=False)[0]
    assert np.linalg.norm(_centroid(warped) - expected) < 0.2, (seed, flipped)


def test_the_affine_includes_the_flip():
    rng = np.random.default_rng(0)
    params = aug.AugmentParams(flip_probability=1.0)
    affine, flipped = aug.random_affine(rng, (SIZE, SIZE), SIZE, params)
    assert flipped and np.linalg.det(affine[:, :2]) < 0
    affine, flipped = aug.random_affine(rng, (SIZE, SIZE), SIZE, aug.AugmentParams(flip_probability=0))
    assert not flipped and np.linalg.det(affine[:, :2]) > 0


def test_a_flip_keeps_the_subjects_left_eye_the_left_eye():
    landmarks = _frontal_landmarks()
    assert landmarks[45, 0] > landmarks[36, 0]  # frontal: subject's left eye on the image's right
    params = aug.AugmentParams(flip_probability=1.0, rotation_deg=0.0)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    out = aug.augment(image, landmarks, np.random.default_rng(1), params=params)
    assert out.flipped
    assert out.landmarks[45, 0] > out.landmarks[36, 0]
    assert out.landmarks[16, 0] > out.landmarks[0, 0] and out.landmarks[54, 0] > out.landmarks[48, 0]
    # new 45 is the mirror image of old 36 (the subject's right eye seen in a mirror)
    moved = aug.apply_affine(out.affine, landmarks)
    np.testing.assert_allclose(out.landmarks[45], moved[36], atol=1e-4)
    np.testing.assert_allclose(out.landmarks[30], moved[30], atol=1e-4)


def test_transform_landmarks_accepts_batched_torch_tensors():
    rng = np.random.default_rng(2)
    affine, _ = aug.random_affine(rng, (SIZE, SIZE), SIZE)
    points = torch.rand(4, 68, 2, dtype=torch.float64) * SIZE
    mapped = aug.transform_landmarks(affine, points, flipped=True)
    assert isinstance(mapped, torch.Tensor) and mapped.shape == (4, 68, 2)
    expected = aug.transform_landmarks(affine, points[1].numpy(), flipped=True)
    np.testing.assert_allclose(mapped[1].numpy(), expected, atol=1e-9)


def test_augment_is_seeded_and_moves_landmarks_with_the_image():
    image = np.random.default_rng(5).integers(0, 256, (100, 90, 3), np.uint8)
    landmarks = _frontal_landmarks() * 0.7
    first = aug.augment(image, landmarks, np.random.default_rng(7), out_size=SIZE)
    second = aug.augment(image, landmarks, np.random.default_rng(7), out_size=SIZE)
    np.testing.assert_array_equal(first.image, second.image)
    assert first.image.shape == (SIZE, SIZE, 3) and first.image.dtype == np.uint8
    np.testing.assert_allclose(
        first.landmarks, aug.transform_landmarks(first.affine, landmarks, first.flipped), atol=1e-4)


PHOTOMETRIC = {
    "color_jitter": lambda im, rng: aug.color_jitter(im, rng),
    "to_grayscale": lambda im, rng: aug.to_grayscale(im),
    "gaussian_blur": lambda im, rng: aug.gaussian_blur(im, rng),
    "motion_blur": lambda im, rng: aug.motion_blur(im, rng),
    "low_light": lambda im, rng: aug.low_light(im, rng),
    "occlude": lambda im, rng: aug.occlude(im, rng),
    "photometric": lambda im, rng: aug.photometric(im, rng),
}


@pytest.mark.parametrize("name", list(PHOTOMETRIC))
def test_photometric_ops_keep_shape_and_dtype(name):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    out = PHOTOMETRIC[name](image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    if name != "photometric":
        assert not np.array_equal(out, image)


def test_grayscale_has_equal_channels_and_half_the_data_is_gray():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    gray = aug.to_grayscale(image)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    expected = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    assert np.abs(gray[..., 0].astype(int) - expected).max() <= 1
    rng = np.random.default_rng(4)
    grays = [(lambda o: (o[..., 0] == o[..., 2]).all())(aug.photometric(image, rng)) for _ in range(400)]
    assert 0.42 < np.mean(grays) < 0.58


def test_low_light_darkens():
    image = np.full((20, 20, 3), 200, np.uint8)
    assert aug.low_light(image, np.random.default_rng(0)).mean() < 0.65 * 200


def test_pairs_validation_items_are_the_plain_crop_and_training_items_add_a_view(tmp_path):
    from face_expr_ros.training.datasets import IndexEntry
    from face_expr_ros.training.pairs import LandmarkPairs, PairParams, blendshape_target

    path = tmp_path / "face.png"
    cv2.imwrite(str(path), np.random.default_rng(3).integers(0, 256, (120, 100, 3), np.uint8))
    entry = IndexEntry(path, (_frontal_landmarks() * 0.6 + 10).astype(np.float32), {}, "human", "s")
    params = PairParams(size=64)
    val = LandmarkPairs([entry], params, train=False)
    first, second = val[0], val[0]
    assert set(first) == {"image", "l1", "blendshapes", "blendshape_mask", "rotation",
                          "rotation_mask", "emotion", "index", "to_crop"}
    for key in first:
        torch.testing.assert_close(first[key], second[key])  # validation: no randomness
    assert first["image"].shape == (3, 64, 64) and first["l1"].shape == (68, 2)
    assert not first["blendshape_mask"].any() and not first["blendshapes"].any()
    assert float(first["rotation_mask"]) == 0 and int(first["emotion"]) == -1  # none known
    item = LandmarkPairs([entry], params, train=True)[0]
    assert set(item) == set(first) | {"image_aug", "l3", "affine", "permutation"}
    flipped = not torch.equal(item["permutation"], torch.arange(68))
    expected = aug.transform_landmarks(item["affine"].double(), item["l1"].double(), flipped)
    torch.testing.assert_close(item["l3"].double(), expected, atol=1e-3, rtol=0)
    scores = np.full(52, np.nan, np.float32)
    scores[3] = 0.7
    target = blendshape_target(scores)
    assert target["blendshape_mask"].tolist() == [1.0 if k == 3 else 0.0 for k in range(52)]
    assert target["blendshapes"][3] == pytest.approx(0.7)
    assert target["blendshapes"].sum() == pytest.approx(0.7)  # NaN -> 0


def test_own_framing_crops_on_the_recorded_prediction(tmp_path):
    """A recorded prediction (crop pixels) comes back in source pixels, and with own_framing 1
    the next crop is framed on it, not on the labels: a prediction shifted by 8 source pixels
    moves the crop by 8 pixels (within the own jitter)."""
    from face_expr_ros.core.align import landmark_crop_affine
    from face_expr_ros.core.camera import apply_affine
    from face_expr_ros.training.datasets import IndexEntry
    from face_expr_ros.training.pairs import LandmarkPairs, PairParams

    path = tmp_path / "face.png"
    cv2.imwrite(str(path), np.random.default_rng(4).integers(0, 256, (160, 140, 3), np.uint8))
    labels = (_frontal_landmarks() * 0.6 + 20).astype(np.float32)
    entry = IndexEntry(path, labels, {}, "human", "s")
    pairs = LandmarkPairs([entry], PairParams(size=64, own_framing=1.0, own_jitter=0.0),
                          train=True)
    first = pairs[0]  # nothing recorded yet: framed on the labels
    np.testing.assert_allclose(apply_affine(first["to_crop"].double().numpy(), labels),
                               first["l1"].double().numpy(), atol=1e-3)
    predicted = labels.astype(np.float64) + (8.0, 0.0)  # the network saw the face 8 px right
    in_crop = apply_affine(first["to_crop"].double().numpy(), predicted)
    pairs.record_framing(first["index"][None], first["to_crop"][None],
                         torch.from_numpy(in_crop)[None].float())
    np.testing.assert_allclose(pairs.framing[0].numpy(),
                               [*predicted.min(0), *predicted.max(0)], atol=0.05)
    second = pairs[0]  # framed on the prediction's box, as the tracking mode frames it
    np.testing.assert_allclose(second["to_crop"].double().numpy(),
                               landmark_crop_affine(predicted, 64), atol=1e-4)
    moved = apply_affine(second["to_crop"].double().numpy(), labels)
    np.testing.assert_allclose(moved, second["l1"].double().numpy(), atol=1e-3)  # labels follow
    assert not np.allclose(moved, first["l1"].double().numpy(), atol=1.0)
    with pytest.raises(ValueError, match="probability"):
        LandmarkPairs([entry], PairParams(own_framing=1.5), train=True)
