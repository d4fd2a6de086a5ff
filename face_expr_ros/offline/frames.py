"""Frame sources for ``face_expr video``: a video file or a rosbag2 image topic -> RGB frames.

A source yields :class:`Frame` (source index, time in seconds from the first frame, RGB image) in
order. A frame that cannot be decoded is skipped: it is logged, its index is added to
``source.unreadable`` and the iteration goes on. A source that cannot be opened, or whose frames are
all unreadable, raises :class:`FrameSourceError` with a one-line reason.

    with open_frames(Path("clip.mp4")) as source:       # or a bag folder, with topic="/camera/image"
        for frame in source.frames(every=1):
            frame.index, frame.time_s, frame.rgb          # (H, W, 3) uint8 RGB
        source.unreadable                               # indices of skipped frames
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator

import cv2

from .frame_source import DEFAULT_FPS, Frame, FrameSource, FrameSourceError  # noqa: F401

log = logging.getLogger(__name__)

MAX_UNKNOWN_TAIL_FAILURES = 50
"""Without a frame count, this many failed reads in a row end the video."""
BAG_SUFFIXES = (".db3", ".mcap")


def open_frames(path: Path, topic: str | None = None) -> FrameSource:
    """The frame source for ``path``: a rosbag2 bag (folder, or its .db3/.mcap file) or a video.

    Raises:
        FrameSourceError: missing, empty, not a video/bag, no image topic (the reason says which).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FrameSourceError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in BAG_SUFFIXES:
        from .bag import BagFrames  # rosbags only when a bag is read

        return BagFrames.open(path, topic)
    if topic is not None:
        raise FrameSourceError(f"--topic {topic}: {path} is a video file, not a rosbag2 bag")
    return VideoFrames.open(path)


class VideoFrames(FrameSource):
    """Frames of a video file through OpenCV's ``VideoCapture`` (FFmpeg)."""

    def __init__(self, path: Path, capture: cv2.VideoCapture, fps: float,
                 frame_count: int | None) -> None:
        super().__init__(path, path.name, fps, frame_count)
        self._capture = capture

    @classmethod
    def open(cls, path: Path) -> "VideoFrames":
        """Open ``path``; FrameSourceError when it is empty or not a video OpenCV can read."""
        if not path.is_file():
            raise FrameSourceError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise FrameSourceError(f"{path}: empty file (0 bytes)")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            capture.release()
            raise FrameSourceError(f"{path}: not a video OpenCV can read (corrupt, or not a "
                                   "video file)")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if not (math.isfinite(fps) and fps > 0):
            log.warning("%s: the video states no frame rate; assuming %g fps", path.name, DEFAULT_FPS)
            fps = DEFAULT_FPS
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return cls(path, capture, fps, count if count > 0 else None)

    def frames(self, every: int = 1) -> Iterator[Frame]:
        """Decoded frames; a failed read inside the stated frame count is an unreadable frame.

        FFmpeg moves past a frame it cannot decode, so reading goes on after a failure. The end is
        the first failure at or after ``frame_count``; without a count, a run of
        :data:`MAX_UNKNOWN_TAIL_FAILURES` failures (failures that end the video are not counted).
        """
        index, failures, decoded = 0, [], 0
        while True:
            wanted = index % every == 0
            ok, bgr = self._capture.read() if wanted else (self._capture.grab(), None)
            if ok:
                for bad in failures:
                    self._skip(bad, "the decoder could not read it")
                failures = []
                if wanted:
                    decoded += 1
                    yield Frame(index, index / self.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            else:
                if self.frame_count is not None and index >= self.frame_count:
                    break
                failures.append(index)
                if self.frame_count is None and len(failures) >= MAX_UNKNOWN_TAIL_FAILURES:
                    failures = []
                    break
            index += 1
        for bad in failures:  # inside the stated frame count: unreadable, not the end
            self._skip(bad, "the decoder could not read it")
        if decoded == 0 and self.unreadable:
            raise FrameSourceError(f"{self.path}: none of its {len(self.unreadable)} frames could "
                                   "be decoded")
        if decoded == 0:
            raise FrameSourceError(f"{self.path}: no frame could be read (an empty or unsupported "
                                   "video)")

    def close(self) -> None:
        self._capture.release()
