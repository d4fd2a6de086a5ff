"""Large faces: the landmark error does not depend on the face's size (issue: a close face in
front of a 1080p camera). helen_train validation crops (split by subject) upscaled 2x, 4x and 8x,
each pasted into a frame twice its size, through the whole inference path (detector, crop,
network, landmarks) give the native crop's NME within 0.5 points (inter-ocular %).

Nearest-neighbour upscaling keeps sharp pixel edges: the content a 10x shrinking warp aliases
(core.align prefilters it), where a smooth upscale would hide the defect.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from face_expr_ros.core.align import warp_crop
from face_expr_ros.core.camera import crop_affine
from face_expr_ros.core.reconstruct import Reconstructor
from face_expr_ros.training.datasets import build_index, load_image_rgb, split_of
from face_expr_ros.training.metrics import nme_per_image

N_FACES = 10


@pytest.fixture(scope="module")
def validation_faces(data_root):
    entries = [e for e in build_index("helen_train", data_root) if split_of(e) == "val"][:N_FACES]
    assert len(entries) == N_FACES
    return [(load_image_rgb(e.path), e.landmarks) for e in entries]


def padded(image: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The image upscaled ``factor`` x (nearest) in the middle of a grey frame twice its size,
    and the offset of its top-left corner."""
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    h, w = big.shape[:2]
    frame = np.full((2 * h, 2 * w, 3), 90, np.uint8)
    frame[h // 2:h // 2 + h, w // 2:w // 2 + w] = big
    return frame, np.array([w // 2, h // 2], np.float64)


def mean_nme(rec: Reconstructor, faces, factor: int) -> float:
    errors = []
    for image, truth in faces:
        frame, offset = padded(image, factor)
        found = rec.reconstruct(frame)
        assert found, f"no face found at {factor}x ({frame.shape[1]}x{frame.shape[0]} frame)"
        nme68, _ = nme_per_image(found[0].landmarks, truth * factor + offset)
        errors.append(100 * nme68)
    return float(np.mean(errors))


def test_nme_does_not_grow_with_face_size(face_model, validation_faces):
    rec = Reconstructor(face_model=face_model, device="cpu", backend="torch")
    native = mean_nme(rec, validation_faces, 1)
    large = {factor: mean_nme(rec, validation_faces, factor) for factor in (2, 4, 8)}
    print(f"NME68 native {native:.2f} %, " + ", ".join(f"{f}x {v:.2f} %" for f, v in large.items()))
    for factor, nme in large.items():
        assert abs(nme - native) <= 0.5, f"{factor}x: NME68 {nme:.2f} % vs native {native:.2f} %"


def test_a_strong_shrink_is_prefiltered_without_moving_the_crop():
    yy, xx = np.mgrid[0:2000, 0:2000]
    affine = crop_affine(np.array([300.0, 400.0, 1500.0, 1600.0]), 128, 0.3)  # 15x shrink
    smooth = (127 + 100 * np.sin(xx / 150) * np.cos(yy / 210)).astype(np.uint8)
    plain = cv2.warpAffine(smooth, affine, (128, 128), flags=cv2.INTER_LINEAR)
    assert np.abs(warp_crop(smooth, affine, 128).astype(float) - plain).mean() < 0.5, \
        "same geometry as the plain warp"
    stripes = ((xx // 3) % 2 * 255).astype(np.uint8)  # 6 px period: far above the crop's Nyquist
    crop = warp_crop(stripes, affine, 128).astype(float)
    aliased = cv2.warpAffine(stripes, affine, (128, 128), flags=cv2.INTER_LINEAR).astype(float)
    assert crop.std() < 25 < 100 < aliased.std(), "averaged to grey, not aliased into bands"
