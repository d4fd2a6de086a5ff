"""Synthetic test clips: a still head with per-frame sensor noise, written as a video file.

Used by bench/jitter.py and the tests: every frame shows the same face (``offline.examples.faces_frame``, the
astronaut from scikit-image, public domain) plus fresh Gaussian noise, and is JPEG re-encoded at a
quality that changes from frame to frame, so any frame-to-frame change of the estimates is jitter.
"""
from __future__ import annotations

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
