"""Per-frame CSV in the layout of Epic's Live Link Face app: one row per frame, one face per file.

Columns (:data:`HEADER`)::

    Timecode, BlendShapeCount, EyeBlinkLeft, ... TongueOut (the 52 ARKit names), HeadYaw, HeadPitch, HeadRoll

- ``Timecode``: ``HH:MM:SS:FF.mmm`` from the frame's time ``t`` (seconds from the first frame) and the
  frame rate: hours, minutes, seconds of ``t``; ``FF`` the frame within that second
  (``floor(frac(t) * fps)``); ``.mmm`` the sub-frame position in thousandths of a frame.
- ``BlendShapeCount``: the number of value columns that follow (55: 52 shapes + 3 head angles).
  Live Link Face's own files have 61 (six eye-rotation columns more); the model estimates no eye
  rotation, so those columns are left out rather than filled with zeros.
- The 52 blendshapes: the ARKit view of the 53 ICT coefficients (``core.arkit``), in [0, 1].
- ``HeadYaw``, ``HeadPitch``, ``HeadRoll``: radians (Live Link Face's unit, as readers of its files
  treat it), the core Euler angles (docs/conventions.md) converted to radians with the same signs:
  ARKit's face frame has the same axes as our model space (x the face's own left, y up, z out of the
  face), and yaw/pitch/roll are right-handed turns about y/x/z, so yaw + = the subject turns to their
  own left, pitch + = looks down, roll + = counter-clockwise as the viewer sees it.

Which face (:class:`MainFace`): the tracked face that is largest when a face is first seen; the file
follows its track id. When that track ends (the face is lost for longer than the tracker keeps ids),
the largest face of the next frame with a face becomes the main face. A row whose frame does not show
the main face keeps its Timecode and BlendShapeCount and leaves the 55 values empty (nothing is
invented; forward-fill them if a tool needs values everywhere).
"""
from __future__ import annotations

import csv
import math
from typing import Sequence, TextIO

import numpy as np

from ..core.arkit import LIVE_LINK_NAMES, to_arkit
from ..core.reconstruct import Face

HEAD_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll")
VALUE_COLUMNS = (*LIVE_LINK_NAMES, *HEAD_COLUMNS)
HEADER = ("Timecode", "BlendShapeCount", *VALUE_COLUMNS)
BLEND_SHAPE_COUNT = len(VALUE_COLUMNS)


def timecode(time_s: float, fps: float) -> str:
    """``HH:MM:SS:FF.mmm`` of a time in seconds at ``fps`` frames per second (module docstring)."""
    if not (math.isfinite(time_s) and time_s >= 0):
        raise ValueError(f"time_s must be a finite number >= 0, got {time_s}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    whole = math.floor(time_s)
    # in thousandths of a frame, rounded: 0.1 s at 10 fps is frame 1, not frame 0 + 0.999
    milli_frames = round((time_s - whole) * fps * 1000)
    if milli_frames >= round(fps * 1000):  # within 1/1000 frame of the next second
        whole, milli_frames = whole + 1, 0
    frame, sub = divmod(milli_frames, 1000)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}:{frame:02d}.{sub:03d}"


def face_values(face: Face) -> list[float]:
    """The 55 values of a row: 52 ARKit coefficients, then head yaw, pitch, roll in radians."""
    arkit = to_arkit(face.names, face.coefficients)
    angles = np.radians(np.asarray(face.euler_deg, dtype=np.float64))
    return [float(v) for v in arkit] + [float(a) for a in angles]


class MainFace:
    """The face a Live Link Face CSV follows (module docstring): one track id at a time."""

    def __init__(self) -> None:
        self.track_id: str | None = None

    def pick(self, faces: Sequence[Face], live_ids: Sequence[str]) -> Face | None:
        """The main face among this frame's tracked ``faces`` (None when it is not seen).

        Args:
            faces: this frame's faces with their track ids.
            live_ids: ids the tracker still holds (a missed face keeps its id for a while).
        """
        if self.track_id is not None and self.track_id not in live_ids:
            self.track_id = None  # its track ended: take the next largest face
        if self.track_id is None and faces:
            self.track_id = max(faces, key=lambda f: f.area).id
        return next((f for f in faces if f.id == self.track_id), None)


class LiveLinkWriter:
    """Writes the header, then one row per frame, to an open text file."""

    def __init__(self, handle: TextIO, fps: float) -> None:
        self.fps = fps
        self._csv = csv.writer(handle, lineterminator="\n")
        self._csv.writerow(HEADER)

    def write(self, time_s: float, face: Face | None) -> None:
        """One row: the face's values, or empty value cells when ``face`` is None."""
        values = ["" for _ in VALUE_COLUMNS] if face is None else \
            [f"{v:.6f}" for v in face_values(face)]
        self._csv.writerow([timecode(time_s, self.fps), BLEND_SHAPE_COUNT, *values])
