"""One JSON line per video frame: the per-image contract of ``core.face_json`` plus frame and track.

Shape of a line (one per processed frame, also when it has no face)::

    {"frame": int,              # index of the frame in the video (or message in the bag topic)
     "time_s": float,           # seconds from the first frame
     "timecode": str,           # as the CSV's Timecode (HH:MM:SS:FF.mmm)
     "image": str, "width": int, "height": int,
     "faces": [{"id": str,      # track id, stable while the face stays tracked
                "box": ..., "score": ..., "expression": ..., "selected_templates": ...,
                "identity": ..., "pose": ..., "landmarks68": ...}]}    # face_json.face_to_dict

:func:`contract_view` strips ``frame``, ``time_s``, ``timecode`` and the faces' ``id``, leaving a
record that ``core.face_json.validate_record`` accepts.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..core.face_json import RECORD_KEYS, image_record
from ..core.reconstruct import Face

def frame_record(index: int, time_s: float, timecode: str, image: str, width: int, height: int,
                 faces: Sequence[Face], arkit: bool = False) -> dict[str, Any]:
    """The JSON line of one frame: the frame fields, then the image record with track ids."""
    return {"frame": int(index), "time_s": float(time_s), "timecode": timecode,
            **image_record(image, width, height, faces, arkit, track_ids=True)}


def contract_view(record: dict[str, Any]) -> dict[str, Any]:
    """The per-image contract's record inside a frame line (frame fields and ids removed)."""
    view = {key: record[key] for key in RECORD_KEYS}
    view["faces"] = [{k: v for k, v in face.items() if k != "id"} for face in record["faces"]]
    return view
