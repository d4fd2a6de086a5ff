"""What every frame source of ``face_expr video`` has: :class:`Frame`, :class:`FrameSource`,
:class:`FrameSourceError` (video files: offline.frames, bags: offline.bag; ``open_frames`` in
offline.frames picks one)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
"""Frame rate assumed when a video does not state one (used for times and timecodes)."""


class FrameSourceError(OSError):
    """The input cannot be read as a video or bag (missing, not a video, no readable frame...)."""


@dataclass
class Frame:
    """One decoded frame: its index in the source, its time in seconds and its RGB pixels."""

    index: int
    time_s: float
    rgb: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class FrameSource:
    """What every source has (subclasses implement :meth:`frames`).

    Attributes:
        path: the input.
        name: short label for records and messages (file name, or ``bag:topic``).
        fps: frames per second (stated by the video, or estimated from a bag's topic).
        frame_count: frames in the source, or None when unknown.
        unreadable: indices of frames that failed to decode (filled while iterating).
    """

    path: Path
    name: str
    fps: float
    frame_count: int | None
    unreadable: list[int] = field(default_factory=list)

    def frames(self, every: int = 1) -> Iterator[Frame]:
        """Frames with ``index % every == 0``, in order (others are skipped cheaply)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _skip(self, index: int, reason: str) -> None:
        log.warning("%s: frame %d skipped: %s", self.name, index, reason)
        self.unreadable.append(index)
