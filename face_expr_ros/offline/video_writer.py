"""RGB frames -> a video file with OpenCV (overlay videos, synthesised test clips)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..core.export import ExportError


class RgbVideoWriter:
    """Writes (H, W, 3) uint8 RGB frames; opened at the first frame's size (later frames of another
    size are resized to it); a context manager that releases the file however the loop ends.

    Raises:
        ExportError: OpenCV has no writer for ``fourcc`` in this container here.
    """

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str = "mp4v") -> None:
        self.path, self.fps, self.fourcc = Path(path), float(fps), fourcc
        self._writer: Any = None
        self._size: tuple[int, int] | None = None

    def write(self, rgb: np.ndarray) -> None:
        height, width = rgb.shape[:2]
        if self._writer is None:
            self._open(width, height)
        if (width, height) != self._size:
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))

    def _open(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc),
                                       self.fps, self._size)
        if not self._writer.isOpened():
            raise ExportError(f"cannot write {self.path.name}: OpenCV has no {self.fourcc} "
                              f"writer for {self.path.suffix or 'this'} files here")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "RgbVideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
