"""sensor_msgs/Image and sensor_msgs/CompressedImage -> RGB arrays, without ROS.

The functions read the messages' fields only (``encoding``, ``width``, ``height``, ``step``,
``data``; ``format``, ``data``), so they take rclpy messages (the node, through
``face_expr_ros.ros.convert``) and the deserialised messages of a bag read with ``rosbags``
(``face_expr video``) alike: one decoder, the same accepted encodings and the same errors.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .imageio import truncation_reason
from .reduced_image import FACTORS, ReducedImage

# 40 Mpx: above any camera a face node should see (8K UHD is 33 Mpx); 8000x8000 is rejected.
DEFAULT_MAX_PIXELS = 40_000_000

# encoding -> (channels, OpenCV conversion to RGB or None when already RGB).
# The generic OpenCV types carry no channel order; OpenCV's own order (BGR, BGRA) is assumed.
_DECODERS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, cv2.COLOR_BGR2RGB),
    "8UC4": (4, cv2.COLOR_BGRA2RGB),
}
SUPPORTED_ENCODINGS = tuple(_DECODERS)


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array (the message says why)."""



def image_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> RGB array.

    Encodings: rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8 (grey copied to three channels),
    and the OpenCV types 8UC1 (as mono8), 8UC3 (as bgr8), 8UC4 (as bgra8). Row padding
    (``step > width * channels``) is skipped; ``is_bigendian`` does not matter for 8-bit data.

    Args:
        msg: the image.
        max_pixels: larger images are rejected (not downscaled): width * height must not exceed it.
    Returns:
        (H, W, 3) uint8 RGB, a new contiguous array (it does not share the message's buffer).
    Raises:
        ImageConversionError: unsupported encoding (16-bit and float images such as depth maps
            included), zero size, more than ``max_pixels``, or ``step``/``data`` not matching.
    """
    encoding = msg.encoding
    if encoding not in _DECODERS:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r} "
            f"(supported: {', '.join(SUPPORTED_ENCODINGS)});"
            " depth or 16-bit images cannot be used, subscribe to a colour or mono8 image topic")
    channels, conversion = _DECODERS[encoding]
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels, "Image")
    if step < width * channels:
        raise ImageConversionError(
            f"Image step {step} is less than width * bytes per pixel = {width} * {channels} = "
            f"{width * channels} ({encoding})")
    data = _as_bytes(msg.data)
    if data.size != step * height:
        raise ImageConversionError(
            f"Image data has {data.size} bytes, expected step * height = {step} * {height} = "
            f"{step * height} ({width}x{height} {encoding})")
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if conversion is None:
        return pixels.copy()  # contiguous, and no longer tied to the message's buffer
    if channels == 1:
        pixels = pixels[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, anything OpenCV decodes) -> RGB array.

    Args:
        msg: the image; ``format`` is only checked for ``compressedDepth`` (rejected).
        max_pixels: larger decoded images are rejected.
    Returns:
        (H, W, 3) uint8 RGB.
    Raises:
        ImageConversionError: empty, corrupt or truncated data, a depth image, too many pixels.
    """
    return decode_compressed(msg, max_pixels).pixels


def decode_compressed(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
                      reduction=None) -> ReducedImage:
    """:func:`compressed_to_rgb`, for a JPEG at a reduced size when ``reduction`` asks for it.

    Args:
        msg, max_pixels: as :func:`compressed_to_rgb` (``max_pixels`` counts the full image).
        reduction: ``(width, height) -> factor`` (core.reduced_image.FACTORS), called with a
            JPEG's size from its header; None, or data that is not a JPEG: full size.
    Returns:
        the pixels with the full image's size (core.reduced_image.ReducedImage; factor 1:
        the full image).
    Raises:
        ImageConversionError: as :func:`compressed_to_rgb`.
    """
    fmt = msg.format
    if "compresseddepth" in fmt.lower():
        raise ImageConversionError(
            f"CompressedImage format {fmt!r} is a compressed depth image; subscribe to a colour "
            "image topic (image/compressed)")
    data = _as_bytes(msg.data)
    if data.size == 0:
        raise ImageConversionError(f"CompressedImage (format {fmt!r}) has no data")
    truncated = truncation_reason(data[:8].tobytes() + data[-64:].tobytes())  # not a full copy
    if truncated is not None:
        raise ImageConversionError(f"CompressedImage (format {fmt!r}, {data.size} bytes) is a "
                                   f"{truncated}")
    size = jpeg_size(data) if reduction is not None else None
    factor = 1
    if size is not None:
        _check_size(size[0], size[1], max_pixels, "CompressedImage")
        factor = int(reduction(*size))
        if factor not in FACTORS:
            raise ValueError(f"reduction returned {factor}, not one of {FACTORS}")
    # RGB straight from the decoder, no cvtColor (IMREAD_REDUCED_GRAYSCALE_k | IMREAD_COLOR_RGB
    # is IMREAD_REDUCED_COLOR_k in RGB order)
    rgb = cv2.imdecode(data, _REDUCED_RGB[factor])
    if rgb is None:
        raise ImageConversionError(
            f"CompressedImage (format {fmt!r}, {data.size} bytes) could not be decoded: corrupt "
            "data or a format OpenCV cannot read")
    if size is None:
        _check_size(rgb.shape[1], rgb.shape[0], max_pixels, "CompressedImage")
        size = (rgb.shape[1], rgb.shape[0])
    try:
        return ReducedImage(rgb, factor, size[0], size[1])
    except ValueError as err:  # a header that does not describe the data
        raise ImageConversionError(f"CompressedImage (format {fmt!r}): {err}") from None


_REDUCED_RGB = {1: cv2.IMREAD_COLOR_RGB,
                2: cv2.IMREAD_REDUCED_GRAYSCALE_2 | cv2.IMREAD_COLOR_RGB,
                4: cv2.IMREAD_REDUCED_GRAYSCALE_4 | cv2.IMREAD_COLOR_RGB,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_COLOR_RGB}
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, ...): not DHT (C4),
# JPG (C8) or DAC (CC); their segment holds precision, height, width
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header, None when ``data`` (uint8) is not a
    JPEG or has no readable one (then a full decode decides)."""
    raw = memoryview(data)
    if len(raw) < 4 or raw[0] != 0xFF or raw[1] != 0xD8:
        return None
    at = 2
    while at + 4 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        length = (raw[at + 2] << 8) | raw[at + 3]
        if marker in _SOF_MARKERS:
            if length < 7 or at + 9 > len(raw):
                return None
            height = (raw[at + 5] << 8) | raw[at + 6]
            width = (raw[at + 7] << 8) | raw[at + 8]
            return (width, height) if width > 0 and height > 0 else None
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        at += 2 + length
    return None


def _check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"{what} has zero size (width={width}, height={height})")
    if width * height > max_pixels:
        raise ImageConversionError(
            f"{what} of {width}x{height} = {width * height / 1e6:.1f} Mpx exceeds max_pixels = "
            f"{max_pixels / 1e6:.1f} Mpx; publish a smaller image (e.g. image_proc resize)")


def _as_bytes(data: Any) -> np.ndarray:
    """A message's ``data`` (array.array, bytes, list or numpy array) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data, dtype=np.uint8).ravel()
    return np.frombuffer(data if isinstance(data, (bytes, bytearray, memoryview)) else bytes(data),
                         dtype=np.uint8)
