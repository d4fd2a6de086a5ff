"""Square face crops for the network, from a detector box or from 68 landmarks.

Both paths frame the face the same way: a square of side ``max(w, h) * (1 + margin)`` around the
*landmark box* (the bounding box of the 68 iBUG points), resized to ``size`` x ``size``. Training
crops come from landmarks; at run time only a detector box is known, and a detector box is not a
landmark box (different scale and centre: libfacedetection's box includes the forehead, the
landmark box stops at the brows). :data:`DETECTOR_BOX_RULE` converts one to the other; it was
measured on helen_train with :func:`calibrate_box_rule` (docs/data.md, "Crop rule").

Every crop keeps its ``crop_to_image`` 2x3 affine, so points predicted in the crop map back to the
image with ``camera.apply_affine(crop.crop_to_image, points)``.

Resampling: bilinear (``INTER_LINEAR``), border ``BORDER_REPLICATE``: a crop that reaches past the
image edge continues the edge pixels instead of a black band whose sharp edge (at a position that
depends on the box) the network could learn as a face-outline cue; training and run time use the
same rule. A warp that shrinks by more than :data:`PREFILTER_SHRINK` (a face much larger than the
crop: a close face in front of a 1080p camera shrinks 10x) would alias, since bilinear sampling
reads only 4 pixels per crop pixel: the region the crop covers is first reduced with
``cv2.INTER_AREA`` (which ``warpAffine`` cannot do) by the integer factor
``ceil(shrink / PREFILTER_SHRINK)``, then warped (:func:`warp_crop`), so the warp shrinks by at most
:data:`PREFILTER_SHRINK`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import apply_affine, compose_affine, crop_affine, invert_affine
from .reduced_image import ReducedImage, image_pixels

DEFAULT_SIZE = 128
PREFILTER_SHRINK = 2.0
"""Warps shrinking by more than this (image pixels per crop pixel) are prefiltered (INTER_AREA);
the training crops shrink less (helen_train's 256 px images: a 150 px face, 195 px with the margin,
to 128 px: 1.5x)."""
CROP_MARGIN = 0.3
"""Added to the landmark box side: 0.3 keeps the jaw line, ears' edge and lower forehead inside."""


@dataclass(frozen=True)
class BoxRule:
    """Detector box -> landmark-equivalent box: ``side = scale * max(w, h)``, centre moved by
    ``(dx, dy) * max(w, h)`` from the detector box's centre (image pixels, y down)."""

    scale: float
    dx: float
    dy: float

    def apply(self, box) -> np.ndarray:
        """(4,) detector box (x0, y0, x1, y1) -> (4,) square landmark-equivalent box."""
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2 + self.dx * side, (y0 + y1) / 2 + self.dy * side
        half = self.scale * side / 2
        return np.array([cx - half, cy - half, cx + half, cy + half])

    def invert(self, landmark_box, width_ratio: float = 1.0) -> np.ndarray:
        """(4,) landmark box -> (4,) the detector box it came from (:meth:`apply` inverted):
        height ``max(w, h) / scale``, width ``width_ratio`` x the landmark box width (the rule
        keeps only the longer side, so the detector's aspect is given)."""
        x0, y0, x1, y1 = (float(v) for v in landmark_box)
        side = max(x1 - x0, y1 - y0) / self.scale
        cx, cy = (x0 + x1) / 2 - self.dx * side, (y0 + y1) / 2 - self.dy * side
        half_w = max(width_ratio * (x1 - x0), 1e-6) / 2
        return np.array([cx - half_w, cy - side / 2, cx + half_w, cy + side / 2])


DETECTOR_BOX_RULE = BoxRule(scale=0.79, dx=0.0, dy=0.127)
"""libfacedetection (core.detect's default) on 435 helen_train faces: landmark side / detector side
median 0.793 (10-90 %: 0.75-0.87), centre 0.127 side lower, 0.006 right (dropped); ytf_train gives
0.82 and 0.13. Re-measure with ``face_expr data report`` after changing the detector."""
DETECTOR_WIDTH_RATIO = 0.97
"""libfacedetection box width / landmark box width, median on helen (docs/detection.md,
"Calibration"): the detector-like box of a face followed by its landmarks (:meth:`BoxRule.invert`)."""


@dataclass
class Crop:
    """A square face crop.

    Attributes:
        image: (size, size, 3) uint8 RGB.
        crop_to_image: (2, 3) crop pixels -> image pixels.
        image_to_crop: (2, 3) image pixels -> crop pixels.
    """

    image: np.ndarray
    crop_to_image: np.ndarray
    image_to_crop: np.ndarray


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) points -> (4,) (x0, y0, x1, y1): their bounding box."""
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise ValueError(f"landmarks must be (N >= 2, 2), got {pts.shape}")
    return np.concatenate((pts.min(0), pts.max(0)))


def landmark_side(landmarks: np.ndarray) -> float:
    """(N, 2) points -> the longer side of their bounding box (the side crops are framed on)."""
    x0, y0, x1, y1 = landmark_box(landmarks)
    return float(max(x1 - x0, y1 - y0))


def warp_crop(image: np.ndarray, image_to_crop: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) image -> (size, size, C) through the 2x3 ``image_to_crop`` (bilinear, replicate;
    prefiltered when it shrinks by more than :data:`PREFILTER_SHRINK`, module docstring)."""
    affine = np.asarray(image_to_crop, np.float64)
    shrink = crop_shrink(affine)
    if shrink > PREFILTER_SHRINK:
        image, affine = _reduced_region(image, affine, size, int(np.ceil(shrink / PREFILTER_SHRINK)))
    return cv2.warpAffine(image, affine, (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _reduced_region(image: np.ndarray, image_to_crop: np.ndarray, size: int,
                    factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``image`` the crop covers, reduced ``factor`` x with INTER_AREA (an integer
    factor and a region a multiple of it: OpenCV's fast path, 20x faster than a fractional one),
    and the 2x3 affine from that reduced region to the crop."""
    height, width = image.shape[:2]
    corners = apply_affine(invert_affine(image_to_crop),
                           np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
    x0, y0 = np.clip(np.floor(corners.min(0)) - 2, 0, (width, height)).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(0)) + 2, 0, (width, height)).astype(int)
    x1, y1 = _multiple_end(x0, x1, width, factor), _multiple_end(y0, y1, height, factor)
    if x1 - x0 < factor or y1 - y0 < factor:  # the crop lies outside the image: replicate
        return image, image_to_crop
    reduced = cv2.resize(image[y0:y1, x0:x1], ((x1 - x0) // factor, (y1 - y0) // factor),
                         interpolation=cv2.INTER_AREA)
    # reduced pixel i averages region pixels [i f, (i + 1) f): its centre is at i f + (f - 1) / 2
    offset = (factor - 1) / 2
    reduced_to_image = np.array([[factor, 0, x0 + offset], [0, factor, y0 + offset]], np.float64)
    return reduced, compose_affine(image_to_crop, reduced_to_image)


def _multiple_end(start: int, end: int, limit: int, factor: int) -> int:
    """``end`` moved so that ``end - start`` is a multiple of ``factor``: out if the image
    (``limit``) allows, else in."""
    longer = start + -(-(end - start) // factor) * factor
    return longer if longer <= limit else start + (end - start) // factor * factor


def crop_from_landmarks(image: np.ndarray | ReducedImage, landmarks: np.ndarray,
                        size: int = DEFAULT_SIZE, margin: float = CROP_MARGIN,
                        framing: BoxRule | None = None) -> Crop:
    """Crop around the landmark box of (68, 2) ``landmarks`` (image pixels), ``margin`` added;
    with ``framing``, around ``framing.apply`` of that box (:func:`framing_of`). A
    core.reduced_image.ReducedImage is cut from its reduced pixels (``landmarks`` and the Crop's
    affines in full-image pixels)."""
    return _crop(image, landmark_crop_affine(landmarks, size, margin, framing), size)


def landmark_crop_affine(landmarks: np.ndarray, size: int = DEFAULT_SIZE,
                         margin: float = CROP_MARGIN, framing: BoxRule | None = None) -> np.ndarray:
    """2x3 image -> crop affine of :func:`crop_from_landmarks` (without ``framing``: the
    training framing)."""
    box = landmark_box(landmarks)
    return crop_affine(box if framing is None else framing.apply(box), size, margin)


MAX_FRAMING_SCALE = 1.25
MAX_FRAMING_SHIFT = 0.15


def framing_of(landmarks: np.ndarray, framed_box) -> BoxRule:
    """The :class:`BoxRule` that takes the landmark box of (68, 2) ``landmarks`` to the square
    ``framed_box`` (x0, y0, x1, y1) their crop was framed around (e.g. ``DETECTOR_BOX_RULE.apply``
    of the detector box): the framing a tracked face keeps while it is followed by its landmarks
    (core.follow, "Framing"). Its scale is kept within 1 / :data:`MAX_FRAMING_SCALE` ..
    :data:`MAX_FRAMING_SCALE` and its shift within :data:`MAX_FRAMING_SHIFT` sides: landmarks
    that disagree with the box by more are not a framing to keep."""
    rule = calibrate_box_rule(landmark_box(landmarks)[None], np.asarray(framed_box, np.float64)[None])
    return BoxRule(float(np.clip(rule.scale, 1 / MAX_FRAMING_SCALE, MAX_FRAMING_SCALE)),
                   float(np.clip(rule.dx, -MAX_FRAMING_SHIFT, MAX_FRAMING_SHIFT)),
                   float(np.clip(rule.dy, -MAX_FRAMING_SHIFT, MAX_FRAMING_SHIFT)))


def blend_framing(old: BoxRule | None, new: BoxRule, weight: float) -> BoxRule:
    """``weight`` of ``new`` and ``1 - weight`` of ``old`` (None: ``new``), per parameter (the
    scale geometrically)."""
    if old is None:
        return new
    return BoxRule(float(old.scale ** (1 - weight) * new.scale ** weight),
                   (1 - weight) * old.dx + weight * new.dx, (1 - weight) * old.dy + weight * new.dy)


def crop_from_box(image: np.ndarray | ReducedImage, box, size: int = DEFAULT_SIZE,
                  margin: float = CROP_MARGIN, rule: BoxRule = DETECTOR_BOX_RULE) -> Crop:
    """Crop from a detector box (x0, y0, x1, y1): ``rule`` turns it into a landmark-equivalent box,
    then the same framing as :func:`crop_from_landmarks`."""
    return _crop(image, crop_affine(rule.apply(box), size, margin), size)


def crop_shrink(image_to_crop: np.ndarray) -> float:
    """Image pixels per crop pixel of a 2x3 image -> crop affine."""
    return float(1.0 / np.sqrt(abs(np.linalg.det(np.asarray(image_to_crop, np.float64)[:, :2]))))


def _crop(image: np.ndarray | ReducedImage, image_to_crop: np.ndarray, size: int) -> Crop:
    pixels, to_image = image_pixels(image)
    source_to_crop = image_to_crop if to_image is None else compose_affine(image_to_crop, to_image)
    return Crop(warp_crop(pixels, source_to_crop, size), invert_affine(image_to_crop),
                image_to_crop)


def calibrate_box_rule(detector_boxes: np.ndarray, landmark_boxes: np.ndarray) -> BoxRule:
    """Fit :class:`BoxRule` from pairs: medians of the side ratio and of the centre offsets.

    Args:
        detector_boxes: (N, 4) detector boxes; landmark_boxes: (N, 4) boxes of the same faces' 68
            points (:func:`landmark_box`).
    """
    det = np.asarray(detector_boxes, np.float64)
    lmk = np.asarray(landmark_boxes, np.float64)
    if det.shape != lmk.shape or det.ndim != 2 or det.shape[1] != 4 or len(det) == 0:
        raise ValueError(f"need two (N, 4) arrays of the same N > 0, got {det.shape} and {lmk.shape}")
    det_side = np.maximum(det[:, 2] - det[:, 0], det[:, 3] - det[:, 1])
    lmk_side = np.maximum(lmk[:, 2] - lmk[:, 0], lmk[:, 3] - lmk[:, 1])
    offset = ((lmk[:, :2] + lmk[:, 2:]) - (det[:, :2] + det[:, 2:])) / 2 / det_side[:, None]
    return BoxRule(float(np.median(lmk_side / det_side)), float(np.median(offset[:, 0])),
                   float(np.median(offset[:, 1])))
