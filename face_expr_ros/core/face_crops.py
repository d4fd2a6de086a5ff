"""Fixed-size face images as REP-155 asks for them: the face's region scaled to fit, centred and
zero-padded (``cropped``), and the same with the eyes made horizontal (``aligned``).

Both are one affine warp of the image (``cv2.warpAffine``, bilinear) followed by zeroing the padding,
so a pixel of the output shows only what lies inside the face's region (rotated for ``aligned``);
whatever of the region falls outside the image is black too. A core.reduced_image.ReducedImage is
warped from its reduced pixels (``roi``, the landmarks and the returned affine in full-image pixels).

    image, affine = padded_crop(rgb, roi, (128, 128))           # roi: x, y, width, height (pixels)
    image, affine = aligned_crop(rgb, roi, landmarks68, (128, 128))
    apply_affine(affine, points)                                  # image pixels -> output pixels
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .camera import compose_affine
from .reduced_image import ReducedImage, image_pixels

RIGHT_EYE = slice(36, 42)  # iBUG 68: the subject's right eye (image left in a frontal view)
LEFT_EYE = slice(42, 48)


def eye_centres(landmarks68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2,) centres of the subject's right and left eye contours (iBUG 36-41, 42-47), pixels."""
    points = np.asarray(landmarks68, np.float64).reshape(68, 2)
    return points[RIGHT_EYE].mean(axis=0), points[LEFT_EYE].mean(axis=0)


def eye_roll_deg(landmarks68: np.ndarray) -> float:
    """Angle in degrees of the line from the right to the left eye centre against the image's x axis
    (positive: the left eye lower in the image, y down)."""
    right, left = eye_centres(landmarks68)
    return math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))


def padded_crop(rgb: np.ndarray | ReducedImage, roi: tuple[int, int, int, int],
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The region ``roi`` (x, y, width, height; pixels) scaled to fit ``size`` (width, height),
    centred, zero-padded.

    Returns:
        (height, width, 3) uint8 image and the (2, 3) affine from image to output pixels.
    """
    return _warp(rgb, roi, size, angle_deg=0.0)


def aligned_crop(rgb: np.ndarray | ReducedImage, roi: tuple[int, int, int, int], landmarks68: np.ndarray,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`padded_crop` after rotating the image about the region's centre so that the eye
    centres (from ``landmarks68``, (68, 2) pixels) lie on one horizontal line."""
    return _warp(rgb, roi, size, angle_deg=eye_roll_deg(landmarks68))


def _warp(rgb: np.ndarray | ReducedImage, roi: tuple[int, int, int, int], size: tuple[int, int],
          angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    x, y, w, h = (float(v) for v in roi)
    out_w, out_h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0 or out_w <= 0 or out_h <= 0:
        raise ValueError(f"empty region {roi} or output size {size}")
    scale = min(out_w / w, out_h / h)
    # continuous pixel edges: the region spans [x, x + w); pixel centres sit at integers
    centre = (x + 0.5 * w - 0.5, y + 0.5 * h - 0.5)
    affine = cv2.getRotationMatrix2D(centre, angle_deg, scale)  # rotates by -angle in y-down view
    affine[:, 2] += np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0]) - np.array(centre)
    pixels, to_image = image_pixels(rgb)
    source = affine if to_image is None else compose_affine(affine, to_image)
    image = cv2.warpAffine(np.ascontiguousarray(pixels), source, (out_w, out_h),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0, 0, 0))
    # zero the padding: what lies outside the scaled region (the region keeps its aspect)
    sw, sh = w * scale, h * scale
    x0, y0 = int(round((out_w - sw) / 2.0)), int(round((out_h - sh) / 2.0))
    image[:, :x0] = 0
    image[:, x0 + int(round(sw)):] = 0
    image[:y0] = 0
    image[y0 + int(round(sh)):] = 0
    return image, affine
