"""Reading photos for reconstruction: any common image file -> (H, W, 3) uint8 RGB, upright, with
bounded memory.

- EXIF orientation is applied (a phone photo stored sideways comes out upright), and the reported
  width/height are the upright ones.
- Gray, gray+alpha, palette, RGBA (alpha dropped), CMYK, 16-bit and 32-bit images become 8-bit RGB
  (16-bit: the top byte).
- Memory is bounded by ``max_pixels``: a JPEG above it is decoded at 1/2, 1/4 or 1/8 scale by the
  JPEG decoder itself (DCT scaling: the full image never exists in memory); other formats above it
  are refused with a message that says what to do. :class:`LoadedImage` keeps the factor so that
  results can be mapped back to pixels of the full image.
- Empty, truncated, corrupt and non-image files raise :class:`ImageLoadError` with a specific reason.

Pillow reads the header (size, format, EXIF) without decoding, which is what makes the bound possible.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MAX_PIXELS = 64_000_000
"""64 MP: an 8000 x 8000 photo decodes in full (192 MB as RGB); larger JPEGs are reduced."""
JPEG_REDUCTIONS = (2, 4, 8)  # the scales libjpeg can decode at directly
_PIL_LOCK = threading.Lock()


class ImageLoadError(OSError):
    """A file that cannot be used as an image; ``reason`` is the short specific cause."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass
class LoadedImage:
    """An image as decoded for reconstruction.

    Attributes:
        rgb: (h, w, 3) uint8 RGB, upright; ``reduction`` times smaller than the file's image.
        width, height: size of the full upright image (what results are reported in).
        reduction: 1, or the JPEG decoder's reduction factor (2, 4 or 8).
        format: Pillow's format name ("JPEG", "PNG", ...).
        mode: the file's pixel mode ("RGB", "L", "CMYK", "I;16", ...).
    """

    rgb: np.ndarray
    width: int
    height: int
    reduction: int
    format: str
    mode: str


def truncation_reason(data: bytes) -> str | None:
    """Why ``data`` is a truncated JPEG/PNG, or None. Decoders fill a truncated file with grey rows
    without an error, so it is judged from the bytes: a JPEG needs its end-of-image marker in the
    last 64 bytes (0xFF is byte-stuffed in entropy-coded data, so 0xFFD9 is only ever the marker),
    a PNG its IEND chunk in the last 16. ``data`` may be just the first 8 and the last 64 bytes.
    """
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        return "truncated PNG (no IEND chunk)"
    return None


def check_not_truncated(path: str | os.PathLike, data: bytes) -> None:
    """:func:`truncation_reason` as an :class:`ImageLoadError` for the file ``path``."""
    reason = truncation_reason(data)
    if reason is not None:
        raise ImageLoadError(path, reason)


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read ``path`` as an upright RGB image (module docstring).

    Raises:
        ImageLoadError: missing, a folder, empty, truncated, not an image, corrupt, or too large.
    """
    file = Path(path)
    _check_file(file)
    _check_tail(file)
    from PIL import Image, UnidentifiedImageError

    try:
        with _PIL_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below
            try:
                image = Image.open(file)
            finally:
                Image.MAX_IMAGE_PIXELS = bomb_limit
    except UnidentifiedImageError:
        raise ImageLoadError(file, "not an image (unknown or unsupported format)") from None
    except OSError as err:
        raise ImageLoadError(file, f"cannot read: {err}") from None
    with image:
        return _decode(file, image, max_pixels)


def _check_file(file: Path) -> None:
    if not file.exists():
        raise ImageLoadError(file, "no such file")
    if file.is_dir():
        raise ImageLoadError(file, "is a folder, not an image")
    if file.stat().st_size == 0:
        raise ImageLoadError(file, "empty file (0 bytes)")
    if not os.access(file, os.R_OK):
        raise ImageLoadError(file, "permission denied")


def _check_tail(file: Path) -> None:
    """Truncation check on the first and last bytes only (a huge file is not read twice)."""
    size = file.stat().st_size
    with file.open("rb") as handle:
        if size <= 4096:
            data = handle.read()
        else:
            head = handle.read(8)
            handle.seek(size - 64)
            data = head + handle.read(64)
    check_not_truncated(file, data)


def _decode(file: Path, image, max_pixels: int) -> LoadedImage:
    from PIL import ImageOps

    width, height = image.size
    fmt, mode = image.format or "?", image.mode
    reduction = _reduction(file, width, height, fmt, max_pixels)
    if reduction > 1:
        image.draft("RGB", (width // reduction, height // reduction))  # libjpeg's DCT scaling
        reduction = round(width / image.size[0])
    stored_size = image.size
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy of a possibly large image
    except (OSError, SyntaxError, ValueError) as err:  # Pillow's decoder errors
        raise ImageLoadError(file, f"corrupt {fmt} data ({err})") from None
    full_w, full_h = width, height
    if image.size != stored_size:  # rotated by 90 degrees: the full size swaps too
        full_w, full_h = height, width
    return LoadedImage(to_rgb8(image), full_w, full_h, reduction, fmt, mode)


def _reduction(file: Path, width: int, height: int, fmt: str, max_pixels: int) -> int:
    """1 when the image fits ``max_pixels``; else the smallest JPEG reduction that makes it fit."""
    pixels = width * height
    if pixels <= max_pixels:
        return 1
    megapixels = f"{width}x{height} ({pixels / 1e6:.0f} MP)"
    limit = f"the limit of {max_pixels / 1e6:g} MP"
    if fmt != "JPEG":
        raise ImageLoadError(file, f"{fmt} image of {megapixels} is above {limit}; only JPEG can "
                                   "be reduced while decoding: downscale it first or raise the limit")
    for factor in JPEG_REDUCTIONS:
        if pixels / factor ** 2 <= max_pixels:
            return factor
    raise ImageLoadError(file, f"JPEG of {megapixels} is above {limit} even at 1/8 scale")


def to_rgb8(image) -> np.ndarray:
    """A Pillow image of any mode -> (H, W, 3) uint8 RGB (16/32-bit: top byte; alpha dropped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image).astype(np.int64)
        top = values >> 8 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else values
        gray = np.clip(top, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if image.mode == "L":  # gray: 3 channels in numpy (Pillow's RGB takes 4 bytes a pixel)
        return np.repeat(np.asarray(image, np.uint8)[..., None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")  # LA, P, PA, RGBA, CMYK, YCbCr, 1
    return np.ascontiguousarray(np.asarray(image, np.uint8))
