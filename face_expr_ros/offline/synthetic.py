"""Synthetic test clips: a still head with per-frame sensor noise, written as a video file.

Used by bench/jitter.py and the tests: every frame shows the same face (``offline.examples.faces_frame``, the
astronaut from scikit-image, public domain) plus fresh Gaussian noise, and is JPEG re-encoded at a
quality that changes from frame to frame, so any frame-to-frame change of the estimates is jitter.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from .video_writer import RgbVideoWriter


def still_head_frames(n_frames: int, width: int = 320, height: int = 240, noise_sigma: float = 4.0,
                      jpeg_qualities: tuple[int, ...] = (70, 80, 90), seed: int = 0) -> list[np.ndarray]:
    """``n_frames`` (height, width, 3) uint8 RGB frames of one still head with per-frame noise.

    Args:
        noise_sigma: standard deviation of the added Gaussian noise, in grey levels (0: none).
        jpeg_qualities: each frame is JPEG-encoded and decoded at these qualities in turn (empty:
            no re-encoding).
    """
    from .examples import faces_frame

    base = faces_frame(width, height, 1).astype(np.float32)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        noisy = np.clip(base + rng.normal(0.0, noise_sigma, base.shape), 0, 255).astype(np.uint8)
        if jpeg_qualities:
            quality = jpeg_qualities[i % len(jpeg_qualities)]
            ok, jpeg = cv2.imencode(".jpg", noisy[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            noisy = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
        frames.append(np.ascontiguousarray(noisy))
    return frames


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = 30.0,
                fourcc: str = "MJPG") -> Path:
    """Write RGB frames to ``path`` (``MJPG`` in .avi: every frame its own JPEG; ``mp4v`` in .mp4)."""
    with RgbVideoWriter(path, fps, fourcc) as writer:
        for rgb in frames:
            writer.write(rgb)
    return Path(path)


def entering_faces_frame(t: float, width: int = 640, height: int = 480, period_s: float = 20.0,
                         head_px: int = 160) -> np.ndarray:
    """The frame at ``t`` seconds of a scene where faces enter, move and leave (bench/soak.py).

    Every ``period_s``: the astronaut's head (``demo.ASTRONAUT_HEAD``, ``head_px`` wide) enters
    on the left and crosses to the right in 60 % of the period, bobbing up and down; a mirrored
    copy enters on the right at 20 % and leaves on the left at 80 %; the last 20 % is empty.
    Background: the blurred astronaut (no face). Returns (height, width, 3) uint8 RGB.
    """
    head, background = _scene_parts(width, height, head_px)
    frame = background.copy()
    phase = (t % period_s) / period_s
    span = width + head_px
    if phase < 0.6:
        _paste(frame, head, int(-head_px + span * phase / 0.6),
               int(height * 0.2 + 30 * np.sin(2 * np.pi * phase * 3)))
    if 0.2 <= phase < 0.8:
        _paste(frame, head[:, ::-1], int(width - span * (phase - 0.2) / 0.6),
               int(height * 0.35 + 20 * np.cos(2 * np.pi * phase * 2)))
    return frame


@lru_cache(maxsize=4)
def _scene_parts(width: int, height: int, head_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The head and the background of :func:`entering_faces_frame` (made once: the blur is slow)."""
    from .examples import ASTRONAUT_HEAD, _background, astronaut

    image = astronaut()
    x0, y0, x1, y1 = ASTRONAUT_HEAD
    head = cv2.resize(image[y0:y1, x0:x1], (head_px, head_px), interpolation=cv2.INTER_AREA)
    return head, _background(image, width, height)


def _paste(frame: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """``patch`` with its top-left corner at (x, y), cut at the frame's edges."""
    h, w = patch.shape[:2]
    fh, fw = frame.shape[:2]
    a, b, c, d = max(x, 0), min(x + w, fw), max(y, 0), min(y + h, fh)
    if b > a and d > c:
        frame[c:d, a:b] = patch[c - y:d - y, a - x:b - x]
