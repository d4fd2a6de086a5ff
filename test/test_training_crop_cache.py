"""The crop cache (training/crop_cache.py): cached crops give the same samples and landmark sets as
the photos; negatives hold no face or half of it; the key follows the landmarks."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from face_expr_ros.training import crop_cache as cc
from face_expr_ros.training.augmentation import AugmentParams
from face_expr_ros.training.datasets import IndexEntry
from face_expr_ros.training.pairs import LandmarkPairs, PairParams

QUIET = AugmentParams(brightness=0, contrast=0, saturation=0, gray_probability=0,
                      blur_probability=0, motion_blur_probability=0, low_light_probability=0,
                      occlusion_probability=0)
NOSE = 30  # on the midline: a flip keeps its index


def face_landmarks(cx: float, cy: float, side: float) -> np.ndarray:
    """(68, 2) points filling a ``side`` box around (cx, cy); point 30 at the centre."""
    rng = np.random.default_rng(3)
    points = rng.uniform(-side / 2, side / 2, (68, 2))
    points[0], points[16] = (-side / 2, -side / 2), (side / 2, side / 2)  # the box
    points[NOSE] = (0.0, 0.0)
    return (points + (cx, cy)).astype(np.float32)


def photo(path: Path, landmarks: np.ndarray, shape=(360, 480)) -> Path:
    """A dark photo with a bright blob at the nose landmark and a textured background."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    nose = landmarks[NOSE]
    blob = 250 * np.exp(-((xs - nose[0]) ** 2 + (ys - nose[1]) ** 2) / (2 * 3.0 ** 2))
    image = np.clip(blob + 20 * (xs % 7 == 0), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), np.repeat(image[..., None], 3, axis=2))
    return path


def centroid(image: torch.Tensor) -> np.ndarray:
    gray = image.mean(0).numpy().astype(np.float64)
    gray = np.where(gray > 0.35, gray, 0.0)
    ys, xs = np.mgrid[0:gray.shape[0], 0:gray.shape[1]]
    return np.array([(xs * gray).sum(), (ys * gray).sum()]) / gray.sum()


@pytest.fixture()
def entries(tmp_path):
    out = []
    for i, (cx, cy, side) in enumerate([(240, 170, 120), (300, 200, 100), (180, 150, 130)]):
        landmarks = face_landmarks(cx, cy, side)
        out.append(IndexEntry(photo(tmp_path / f"p{i}.png", landmarks), landmarks, {}, "human", "toy"))
    return out


def test_cached_validation_items_equal_the_photo_items(entries, tmp_path):
    cache = cc.build_crop_cache("toy", entries, root=tmp_path / "crops")
    from_photos = LandmarkPairs(entries, train=False)
    cached = LandmarkPairs(entries, train=False, caches={"toy": cache})
    assert all(r is not None for r in cached.rows)
    for i in range(len(entries)):
        a, b = from_photos[i], cached[i]
        torch.testing.assert_close(a["l1"], b["l1"], atol=1e-3, rtol=0)
        assert (a["image"] - b["image"]).abs().mean() < 0.01  # one resampling more
        np.testing.assert_allclose(centroid(b["image"]), b["l1"][NOSE].numpy(), atol=0.5)


def test_cached_training_items_keep_the_three_landmark_sets_consistent(entries, tmp_path):
    cache = cc.build_crop_cache("toy", entries, root=tmp_path / "crops")
    pairs = LandmarkPairs(entries, PairParams(augment=QUIET), train=True, caches={"toy": cache},
                          negatives=True)
    torch.manual_seed(0)
    for i in range(12):
        item = pairs[i % len(entries)]
        # L1 marks the blob in the crop, L3 = A(L1) marks it in the augmented view
        np.testing.assert_allclose(centroid(item["image"]), item["l1"][NOSE].numpy(), atol=0.6)
        np.testing.assert_allclose(centroid(item["image_aug"]), item["l3"][NOSE].numpy(), atol=0.6)
        affine = item["affine"].double().numpy()
        carried = affine[:, :2] @ item["l1"][NOSE].double().numpy() + affine[:, 2]
        np.testing.assert_allclose(carried, item["l3"][NOSE].numpy(), atol=1e-3)
        assert item["negative"].shape == (3, 128, 128) and float(item["negative_valid"]) == 1.0


def test_negatives_miss_the_face_or_hold_half_of_it(entries, tmp_path):
    params = cc.CacheParams()
    cache = cc.build_crop_cache("toy", entries, params, root=tmp_path / "crops")
    assert cache.has_negative.all()  # a large photo: background and half face for each
    for row, entry in enumerate(entries):
        background, half = (np.asarray(cache.negatives[row, k], np.float64) for k in (0, 1))
        assert background.max() < 60  # no blob: the nose is not in the background patch
        assert half.max() > 100  # the half face still shows the nose (shift < crop half side)
    # a tight thumbnail (the face fills the image) has no background, nor a half face inside
    rng = np.random.default_rng(0)
    landmarks = face_landmarks(24, 24, 44)
    assert cc.background_affine(landmarks, (48, 48, 3), 128, params, rng) is None
    shifted = cc.half_face_affine(landmarks, 128, params, rng)
    assert cc.inside_fraction(shifted, 128, (48, 48, 3)) < params.inside_min


def test_cache_is_reused_and_keyed_by_the_landmarks(entries, tmp_path):
    root = tmp_path / "crops"
    first = cc.build_crop_cache("toy", entries, root=root)
    again = cc.build_crop_cache("toy", entries, root=root)
    assert again.folder == first.folder
    moved = [e._replace(landmarks=e.landmarks + 1) for e in entries]
    other = cc.build_crop_cache("toy", moved, root=root)
    assert other.folder != first.folder
    assert sorted(p.name for p in root.iterdir()) == sorted([first.folder.name, other.folder.name])
    with pytest.raises(ValueError, match="no entries with landmarks"):
        cc.build_crop_cache("toy", [e._replace(landmarks=None) for e in entries], root=root)


def test_unreadable_photo_is_left_out_of_the_cache(entries, tmp_path):
    bad = entries[1].path
    bad.write_bytes(b"not an image")
    cache = cc.build_crop_cache("toy", entries, root=tmp_path / "crops")
    assert cache.valid.tolist() == [True, False, True]
    pairs = LandmarkPairs(entries, train=False, caches={"toy": cache})
    assert pairs.rows[1] is None  # read from the photo (and skipped there as before)
