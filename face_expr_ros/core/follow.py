"""Tracking mode: follow confirmed faces by their landmarks, detect only to find faces.

The "follow" stage of the video data flow (DESIGN.md), after MediaPipe's video mode and 3DDFA_V2's
video demo: the detector runs on the first frame, then a face's next crop comes from its previous
frame's 68 landmarks (moved by the motion a constant-velocity model predicts), which is exactly how
training crops are framed (core.align.crop_from_landmarks); the crop is then framed once more around
the landmarks it gave and run again (the refine pass, measured below: without it the tracking
mode cost accuracy). The detector runs again

- on a schedule (every ``detection_interval_s``) to find new faces; a followed face that no
  detection overlaps then is dropped from following (it left, or it is being followed into the
  background);
- on the frame after a followed face's presence fell below ``presence_threshold`` or its landmark
  box left the image, and while the tracker keeps ids of faces it no longer follows (so a lost face
  found again keeps its id: core.tracking.Tracker's ``max_missed``).

Framing: a face's crops are framed as the detector frames it, not around its own landmarks. When
a detection finds a face, the crop it was given (``DETECTOR_BOX_RULE.apply`` of the detector box)
is stored relative to the landmarks the network gave on it (core.align.framing_of: scale and shift
of the landmark box); every followed crop applies that relation to the predicted landmarks'
box; a scheduled detection that sees the face again moves the relation :data:`REFRAME_WEIGHT` of
the way to its own. Framing crops on the landmark box alone (the training framing) drifts: the
network's landmark box on a crop framed on its own landmarks is not quite the one it gives on the
detector's crop, and each frame's crop inherits the previous frame's error (on 85 still helen
faces, ``bench/self_framing.py --passes 10``: the detector's crop 6.03 %, crops framed on the
network's own landmarks 6.02 % after one pass, 6.05-6.07 % after three to ten; on the moving
clip of ``bench/tracking_nme.py`` tracking cost 0.07 points at every refine setting, 0.9 / 0.95
/ 1.0). Anchored on the detector's framing, a followed face keeps the crop that per-frame
detection would give it, moved with the face (measured in docs/node.md, "Tracking accuracy").

Presence is :func:`presence`: the network's presence score (``Face.presence``) when the weights have
that head, else a measured proxy: the score of the detector run on the crop itself, reduced to
:data:`PRESENCE_SIDE` px (1.3 ms against 7 ms at 128 px, the same scores: 0.93 on the face, no
detection on grey or background crops; measured under load on the example image), counted only
for a detection where the crop expects the face. The network's own landmarks
are no proxy: on a crop of grey wall or background it still returns a face-shaped set framed like
its training crops (their box's IoU with the expected box was 0.89 on a uniform grey crop against
0.96 on the face, measured on the bundled example image).

No ROS here; :class:`core.reconstruct.Reconstructor` drives it (``follow=True``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .align import BoxRule, blend_framing, landmark_box
from .detect import Detection
from .tracking import box_iou

DEFAULT_DETECTION_INTERVAL_S = 0.5
DEFAULT_PRESENCE_THRESHOLD = 0.5
MIN_INSIDE = 0.6
"""A followed face whose landmark box is less than this fraction inside the image is dropped:
it is leaving the frame (a crop that continues the edge pixels must not be followed further)."""
MAX_EXTRAPOLATION_S = 0.25
"""The motion model extrapolates at most this far (a stalled stream must not throw crops away)."""


@dataclass
class FollowedFace:
    """A face followed by its landmarks.

    Attributes:
        landmarks: (68, 2) image pixels, the last frame's (unsmoothed) network output.
        timestamp: seconds of that frame.
        velocity: (2,) landmark-box centre motion, pixels per second.
        growth: landmark-box size change, log units per second.
        score: the detection score of the face's last detection.
        framing: how its crops are framed around its landmark box (core.align.framing_of: the
            detector's framing, module docstring); None: the landmark box itself.
    """

    landmarks: np.ndarray
    timestamp: float
    velocity: np.ndarray
    growth: float
    score: float
    framing: BoxRule | None = None


def predict_landmarks(face: FollowedFace, timestamp: float) -> np.ndarray:
    """(68, 2) the landmarks moved to ``timestamp`` by constant velocity and size change."""
    dt = float(np.clip(timestamp - face.timestamp, 0.0, MAX_EXTRAPOLATION_S))
    box = landmark_box(face.landmarks)
    centre = (box[:2] + box[2:]) / 2
    zoom = float(np.exp(face.growth * dt))
    return (face.landmarks - centre) * zoom + centre + face.velocity * dt


DEFAULT_REFINE_IOU = 0.95
"""The refine pass: a followed face whose landmark box has IoU below this with the box its crop was
framed around (the prediction) is cropped again around the landmarks that crop gave and run again
(core.reconstruct); 1.0 refines every face, 0.0 none. A crop framed on a prediction that missed
gives worse landmarks; one the face filled as predicted gives the same landmarks again, so the
second pass only costs time there (about 4 ms a face on 2 CPUs). Measured with the weights of
2026-12-03 and the detector's framing kept ("Framing" above; bench/tracking_nme.py --faces 40
--refine-iou 0.9 0.95 1, helen faces x 60 fast-moving frames, up to 16 px a frame; NME68 mean,
refine passes per frame): detecting every frame 5.91 %; tracking at 0.9 5.94 % (0.26), at 0.95
5.88 % (0.77), always 5.89 % (1.03). A still face is never refined (0 passes at 0.9 and 0.95 on
the example frames of bench/latency.py), a face moving as a person in front of a robot does (a
few px a frame) on few frames."""
REFRAME_WEIGHT = 0.5
"""Framing: the share of a new detection's framing in a followed face's (the rest is the framing
it had; module docstring)."""
PRESENCE_SIDE = 64
"""Side (px) of the crop the detector sees for the presence proxy."""
PRESENCE_IOU = 0.3
"""Least IoU of a detection in the crop with the expected detector box to count as the face."""


def presence(network_presence: float | None,
             crop_detections: Callable[[], tuple[list[Detection], np.ndarray]]) -> float:
    """Score in [0, 1] that a followed crop still holds the face.

    Args:
        network_presence: the network's presence head (``Face.presence``) when the weights have
            it: then it is the answer.
        crop_detections: else the proxy: called (so the detector runs only when needed) for the
            detector's detections on the crop and (4,) the detector box the crop was framed for,
            in the same pixels; the best score of the detections whose box has IoU >=
            :data:`PRESENCE_IOU` with it; 0 when none.
    """
    if network_presence is not None:
        return float(network_presence)
    detections, expected_box = crop_detections()
    if not detections:
        return 0.0
    boxes = np.array([d.box for d in detections], np.float64)
    iou = box_iou(boxes, np.asarray(expected_box, np.float64)[None])[:, 0]
    return float(max((d.score for d, v in zip(detections, iou) if v >= PRESENCE_IOU), default=0.0))


def inside_fraction(box: np.ndarray, width: int, height: int) -> float:
    """Fraction of the area of ``box`` (x0, y0, x1, y1) inside a ``width`` x ``height`` image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    if area == 0:
        return 0.0
    inner = max(min(x1, width) - max(x0, 0.0), 0.0) * max(min(y1, height) - max(y0, 0.0), 0.0)
    return inner / area


def best_matches(boxes: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) for box i of ``boxes`` (N, 4) the index of the box of ``others`` (M, 4) it overlaps
    most, if that IoU is >= ``threshold``; else -1."""
    boxes, others = np.reshape(boxes, (-1, 4)), np.reshape(others, (-1, 4))
    if len(boxes) == 0 or len(others) == 0:
        return np.full(len(boxes), -1)
    iou = box_iou(boxes, others)
    best = iou.argmax(axis=1)
    return np.where(iou[np.arange(len(boxes)), best] >= threshold, best, -1)


def overlapping(boxes: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) bool: box i of ``boxes`` (N, 4) has IoU >= ``threshold`` with one of ``others`` (M, 4)."""
    return best_matches(boxes, others, threshold) >= 0


class FaceFollower:
    """Per-id landmark state and the detection schedule of the tracking mode.

    Args:
        detection_interval_s: seconds between detections while faces are followed (>= 0; 0 =
            detect every frame); also the longest a new face waits to be detected.
        presence_threshold: a followed face with :func:`presence` below it is dropped from
            following (and detection runs on the next frame), in [0, 1].
        refine_iou: :data:`DEFAULT_REFINE_IOU`, in [0, 1].
    """

    def __init__(self, detection_interval_s: float = DEFAULT_DETECTION_INTERVAL_S,
                 presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD,
                 refine_iou: float = DEFAULT_REFINE_IOU) -> None:
        self.configure(detection_interval_s, presence_threshold, refine_iou)
        self.faces: dict[str, FollowedFace] = {}
        # (landmarks, score, framing) of faces a deferred detection found, no id yet
        self.new_faces: list[tuple[np.ndarray, float, BoxRule | None]] = []
        self.last_detection: float | None = None
        self.detect_next = True

    def configure(self, detection_interval_s: float | None = None,
                  presence_threshold: float | None = None,
                  refine_iou: float | None = None) -> None:
        """Change the settings (None: unchanged); ValueError names a value out of range."""
        if detection_interval_s is not None:
            if not np.isfinite(detection_interval_s) or detection_interval_s < 0:
                raise ValueError(f"detection_interval_s must be >= 0, got {detection_interval_s}")
            self.detection_interval_s = float(detection_interval_s)
        if presence_threshold is not None:
            if not 0.0 <= presence_threshold <= 1.0:
                raise ValueError(f"presence_threshold must be in [0, 1], got {presence_threshold}")
            self.presence_threshold = float(presence_threshold)
        if refine_iou is not None:
            if not 0.0 <= refine_iou <= 1.0:
                raise ValueError(f"refine_iou must be in [0, 1], got {refine_iou}")
            self.refine_iou = float(refine_iou)

    def needs_refine(self, landmarks: np.ndarray, framed: np.ndarray) -> bool:
        """Run the refine pass for a face whose first crop, framed around ``framed`` (68, 2),
        gave ``landmarks`` (68, 2)? (:data:`DEFAULT_REFINE_IOU`)"""
        if self.refine_iou >= 1.0:
            return True
        iou = box_iou(landmark_box(landmarks)[None], landmark_box(framed)[None])[0, 0]
        return bool(iou < self.refine_iou)

    def reset(self) -> None:
        """Forget every face; the next frame is detected."""
        self.faces.clear()
        self.new_faces = []
        self.last_detection, self.detect_next = None, True

    def needs_detection(self, timestamp: float, unfollowed_tracks: bool) -> bool:
        """Detect in the frame at ``timestamp``? ``unfollowed_tracks``: the tracker holds ids of
        faces not followed (lost ones it may still find, or tentative ones)."""
        if self.detect_next or unfollowed_tracks or self.last_detection is None:
            return True
        if timestamp < self.last_detection:  # time went backwards: start over
            return True
        return timestamp - self.last_detection >= self.detection_interval_s

    def detected(self, timestamp: float) -> None:
        """A detection of the frame at ``timestamp`` ran (or started): the schedule restarts."""
        self.last_detection, self.detect_next = float(timestamp), False

    def predictions(self, timestamp: float) -> tuple[list[str], list[np.ndarray]]:
        """Ids of the followed faces and their (68, 2) predicted landmarks at ``timestamp``."""
        ids = list(self.faces)
        return ids, [predict_landmarks(self.faces[i], timestamp) for i in ids]

    def reframe(self, track_id: str | None, framing: BoxRule) -> None:
        """A detection saw followed face ``track_id`` with ``framing`` (core.align.framing_of of
        its landmarks and the detector's crop box): its crops move :data:`REFRAME_WEIGHT` of
        the way to it (module docstring, "Framing")."""
        face = self.faces.get(track_id) if track_id is not None else None
        if face is not None:
            face.framing = blend_framing(face.framing, framing, REFRAME_WEIGHT)

    def keep(self, track_id: str, landmarks: np.ndarray, timestamp: float, score: float,
             framing: BoxRule | None = None) -> None:
        """Record a face's landmarks of this frame (a new face or a followed one) and the framing
        its next crop keeps."""
        landmarks = np.asarray(landmarks, np.float64)
        old = self.faces.get(track_id)
        velocity, growth = np.zeros(2), 0.0
        if old is not None and timestamp > old.timestamp:
            dt = timestamp - old.timestamp
            new_box, old_box = landmark_box(landmarks), landmark_box(old.landmarks)
            velocity = ((new_box[:2] + new_box[2:]) - (old_box[:2] + old_box[2:])) / 2 / dt
            growth = float(np.log(_side(new_box) / max(_side(old_box), 1e-6)) / dt)
        self.faces[track_id] = FollowedFace(landmarks, float(timestamp), velocity, growth,
                                            float(score), framing)

    def drop(self, track_ids) -> None:
        """Stop following these ids (gone, lost or dropped by the tracker)."""
        for track_id in track_ids:
            self.faces.pop(track_id, None)


def _side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1], 1e-6))
