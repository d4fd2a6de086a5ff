"""An image decoded at a fraction of its size, and when the tracking mode can use one.

A JPEG decodes at 1/2, 1/4 or 1/8 of its size in the DCT domain (libjpeg's scaled decoding,
OpenCV's ``IMREAD_REDUCED_*``) for a fraction of a full decode's cost (bench/latency.py, "JPEG
decode": 1280x720 at 1/2 in about half the time). Pixel ``i`` of a ``factor`` x reduced image
averages the full image's pixels ``[factor i, factor (i + 1))``, so its centre lies at
``factor i + (factor - 1) / 2`` (measured on a decoded spot, test_core_reduced_image.py), and
the reduced side is ``ceil(side / factor)``.

:class:`ReducedImage` carries the reduced pixels with the full image's size; the Reconstructor
takes one wherever it takes an RGB array and answers in full-image pixels (boxes, landmarks,
pose), cutting its crops from the reduced pixels. :func:`reduction_for` is the rule that keeps the
answers unchanged: a reduction only while the detector would shrink the image at least as much
(its ``max_side``) and every followed face's crop is shrunk at least as much too (then the crop
warp prefilters anyway, core.align).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

FACTORS = (1, 2, 4, 8)  # what JPEG's scaled decoding offers (through OpenCV)


@dataclass(frozen=True)
class ReducedImage:
    """RGB pixels at 1/``factor`` of an image of ``width`` x ``height`` pixels.

    Attributes:
        pixels: (ceil(height / factor), ceil(width / factor), 3) uint8 RGB.
        factor: 1, 2, 4 or 8.
        width, height: the full image's size.
    """

    pixels: np.ndarray
    factor: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.factor not in FACTORS:
            raise ValueError(f"ReducedImage: factor must be one of {FACTORS}, got {self.factor}")
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 3 or self.pixels.shape[2] != 3:
            raise ValueError(f"ReducedImage: pixels must be (H, W, 3) uint8 RGB, got "
                             f"{self.pixels.shape} {self.pixels.dtype}")
        expected = (-(-self.height // self.factor), -(-self.width // self.factor))
        if self.pixels.shape[:2] != expected:
            raise ValueError(f"ReducedImage: pixels {self.pixels.shape} for a {self.width}x"
                             f"{self.height} image at 1/{self.factor}: expected {expected} rows, "
                             "columns")

    @property
    def to_image(self) -> np.ndarray:
        """2x3 affine: reduced pixels -> full-image pixels."""
        f, offset = float(self.factor), (self.factor - 1) / 2.0
        return np.array([[f, 0.0, offset], [0.0, f, offset]])


def image_pixels(image: np.ndarray | ReducedImage) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels to read and their affine to full-image pixels (None: they are the image)."""
    if isinstance(image, ReducedImage):
        return image.pixels, (None if image.factor == 1 else image.to_image)
    return image, None


def image_size(image: np.ndarray | ReducedImage) -> tuple[int, int]:
    """(width, height) of the full image."""
    if isinstance(image, ReducedImage):
        return image.width, image.height
    return image.shape[1], image.shape[0]


def reduction_for(width: int, height: int, detector_max_side: int,
                  crop_shrinks: Iterable[float], max_factor: int = 8) -> int:
    """The largest factor (of :data:`FACTORS`, at most ``max_factor``) that changes nothing:
    the detector, which downscales to ``detector_max_side``, still gets at least that many
    pixels, and each of ``crop_shrinks`` (full-image pixels per crop pixel of a face the next
    crops come from, e.g. the followed faces' last crops) is at least the factor."""
    shrinks = list(crop_shrinks)
    best = 1
    for factor in FACTORS[1:]:
        if factor > max_factor or max(width, height) / factor < detector_max_side:
            break
        if any(shrink < factor for shrink in shrinks):
            break
        best = factor
    return best
