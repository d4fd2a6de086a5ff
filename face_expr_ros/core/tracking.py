"""Face tracking (stable ids across frames) and temporal smoothing (One-Euro filter).

The "track" and "smooth" stages of the data flow (DESIGN.md): boxes of one frame are matched to the
faces of the previous frame by box IoU (Hungarian assignment), each face keeps a string id while it
stays tracked, and its expression coefficients and head pose are smoothed with One-Euro filters.
No ROS here: the node calls :meth:`Tracker.update` per frame and :meth:`Tracker.smooth` per face.

Ids are decimal strings "1", "2", ... in order of first appearance, never reused by a tracker (a
face lost and found again gets a new id); they restart at "1" with a new tracker (a node restart).
They are the suffix of the TF frames ``face_<id>`` and ``gaze_<id>``.

Example::

    tracker = Tracker(min_hits=2, max_missed=5)
    for boxes, t in frames:                      # boxes (N, 4) x0, y0, x1, y1; t in seconds
        for a in tracker.update(boxes, t):
            if a.confirmed:
                s = tracker.smooth(a.track_id, t, beta, rotation, translation, scale)
        for gone in tracker.dropped_ids():       # publish DELETE markers for these
            ...
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation


# ---------------------------------------------------------------------------------------------
# One-Euro filter
# ---------------------------------------------------------------------------------------------
def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Exponential smoothing factor of a first-order low-pass with ``cutoff`` Hz over ``dt`` s.

    ``alpha = 1 / (1 + tau / dt)`` with ``tau = 1 / (2 pi cutoff)`` (Casiez et al. 2012, eq. 4).
    """
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) for a vector-valued signal.

    An exponential low-pass whose cutoff rises with the signal's speed:
    ``cutoff = min_cutoff + beta * |dx/dt|``, where the speed is itself low-passed at ``d_cutoff``.
    Slow signals are smoothed strongly (little jitter), fast ones follow with little lag. Each
    component of the vector has its own speed and cutoff (as if filtered separately).

    Timestamps are in seconds. A sample whose timestamp equals the previous one is ignored (the
    previous output is returned: a duplicate frame); a timestamp earlier than the previous one (a
    bag restarted, simulated time reset) resets the filter, which then outputs the sample as is.

    Args:
        min_cutoff: cutoff in Hz at zero speed (> 0); lower = smoother when still, more lag.
        beta: speed coefficient (>= 0, in 1 / signal unit); higher = less lag when moving.
        d_cutoff: cutoff in Hz of the speed estimate (> 0).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        self.set_parameters(min_cutoff, beta, d_cutoff)
        self.reset()

    def set_parameters(self, min_cutoff: float, beta: float, d_cutoff: float) -> None:
        """Change the parameters, keeping the state (ValueError on out-of-range values)."""
        _check_float("min_cutoff", min_cutoff, low=0.0, low_open=True)
        _check_float("beta", beta, low=0.0)
        _check_float("d_cutoff", d_cutoff, low=0.0, low_open=True)
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)

    def reset(self) -> None:
        """Forget the state: the next sample is output unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @property
    def value(self) -> np.ndarray | None:
        """The last output (a copy), or None before the first sample."""
        return None if self._x is None else self._x.copy()

    def __call__(self, x: np.ndarray | float, timestamp: float) -> np.ndarray:
        """Filter one sample.

        Args:
            x: (D,) sample, or a scalar; its shape must not change between calls.
            timestamp: seconds.
        Returns:
            The filtered sample, float64, same shape as ``x``.
        """
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"OneEuroFilter: sample is not finite: {x}")
        timestamp = float(timestamp)
        if self._x is not None and x.shape != self._x.shape:
            raise ValueError(f"OneEuroFilter: sample shape {x.shape} differs from the filtered "
                             f"shape {self._x.shape}; reset() the filter to change it")
        if self._t is None or timestamp < self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), timestamp
            return x.copy()
        if timestamp == self._t:
            return self._x.copy()
        dt = timestamp - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + smoothing_factor(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + smoothing_factor(cutoff, dt) * (x - self._x)
        self._t = timestamp
        return self._x.copy()


class RotationFilter:
    """One-Euro smoothing of a rotation through its quaternion.

    The quaternion is flipped to the hemisphere of the previous output (q and -q are the same
    rotation; without this the filter would average them towards zero), filtered component-wise by
    a :class:`OneEuroFilter`, renormalised and turned back into a matrix. For the small steps
    between frames this is a close approximation of filtering on the rotation group, and the
    output is always a proper rotation. Quaternion components move at about half the angular
    speed in rad/s, which is the unit of ``beta`` here.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        self._filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self._last_q: np.ndarray | None = None

    def set_parameters(self, min_cutoff: float, beta: float, d_cutoff: float) -> None:
        """Change the parameters, keeping the state."""
        self._filter.set_parameters(min_cutoff, beta, d_cutoff)

    def reset(self) -> None:
        """Forget the state."""
        self._filter.reset()
        self._last_q = None

    def __call__(self, rotation: np.ndarray, timestamp: float) -> np.ndarray:
        """Filter one rotation.

        Args:
            rotation: (3, 3) rotation matrix.
            timestamp: seconds.
        Returns:
            (3, 3) proper rotation (orthonormal, det = +1).
        """
        rotation = np.asarray(rotation, dtype=np.float64)
        if rotation.shape != (3, 3):
            raise ValueError(f"RotationFilter: rotation must be (3, 3), got {rotation.shape}")
        q = Rotation.from_matrix(rotation).as_quat()  # (x, y, z, w)
        if self._last_q is not None and float(q @ self._last_q) < 0.0:
            q = -q
        smoothed = self._filter(q, timestamp)
        norm = np.linalg.norm(smoothed)
        if norm < 1e-9:  # impossible with sign continuity; keep the input, do not divide by 0
            smoothed, norm = q, 1.0
        self._last_q = smoothed / norm
        return Rotation.from_quat(self._last_q).as_matrix()


@dataclass(frozen=True)
class SmoothedFace:
    """Smoothed per-face values, in the units they were given.

    Attributes:
        coefficients: (E,) expression coefficients.
        rotation: (3, 3) proper rotation.
        translation: (3,) translation.
        scale: scale (> 0).
    """

    coefficients: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: float


class FaceSmoother:
    """One-Euro filters for one face: coefficients, rotation, translation and log-scale.

    The scale is filtered as ``log(scale)`` so that its speed is relative (1/s) whatever the unit.
    ``beta`` of the pose filters applies to the rotation (quaternion components/s), translation
    (its unit/s; the node passes metres) and log-scale alike.
    """

    def __init__(self, params: "SmoothingParameters") -> None:
        self.coefficients = OneEuroFilter(params.min_cutoff, params.beta, params.d_cutoff)
        self.rotation = RotationFilter(params.pose_min_cutoff, params.pose_beta, params.d_cutoff)
        self.translation = OneEuroFilter(params.pose_min_cutoff, params.pose_beta, params.d_cutoff)
        self.log_scale = OneEuroFilter(params.pose_min_cutoff, params.pose_beta, params.d_cutoff)

    def set_parameters(self, params: "SmoothingParameters") -> None:
        """Change the parameters of all filters, keeping their state."""
        self.coefficients.set_parameters(params.min_cutoff, params.beta, params.d_cutoff)
        for f in (self.rotation, self.translation, self.log_scale):
            f.set_parameters(params.pose_min_cutoff, params.pose_beta, params.d_cutoff)

    def __call__(self, timestamp: float, coefficients: np.ndarray, rotation: np.ndarray,
                 translation: np.ndarray, scale: float) -> SmoothedFace:
        """Filter one frame's values of this face (shapes as in :class:`SmoothedFace`)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        return SmoothedFace(
            coefficients=self.coefficients(np.asarray(coefficients, dtype=np.float64), timestamp),
            rotation=self.rotation(rotation, timestamp),
            translation=self.translation(np.asarray(translation, dtype=np.float64), timestamp),
            scale=float(np.exp(self.log_scale(np.log([float(scale)]), timestamp)[0])),
        )


# ---------------------------------------------------------------------------------------------
# Parameters and their validation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmoothingParameters:
    """One-Euro parameters of a face's filters.

    Attributes:
        smoothing: False returns the values unchanged (filters are not run).
        min_cutoff, beta: expression coefficients (beta in 1 / (coefficient/s)).
        pose_min_cutoff, pose_beta: rotation, translation and log-scale.
        d_cutoff: cutoff (Hz) of the speed estimates of all filters.
    """

    smoothing: bool = True
    min_cutoff: float = 1.0
    beta: float = 0.5
    pose_min_cutoff: float = 1.0
    pose_beta: float = 1.0
    d_cutoff: float = 1.0


# name -> (kind, low, low_open, high); kind "int", "float" or "bool"; high None = unbounded.
PARAMETER_RANGES: dict[str, tuple[str, float | None, bool, float | None]] = {
    "min_hits": ("int", 1, False, None),
    "max_missed": ("int", 0, False, None),
    "iou_threshold": ("float", 0.0, True, 1.0),
    "smoothing": ("bool", None, False, None),
    "min_cutoff": ("float", 0.0, True, None),
    "beta": ("float", 0.0, False, None),
    "pose_min_cutoff": ("float", 0.0, True, None),
    "pose_beta": ("float", 0.0, False, None),
    "d_cutoff": ("float", 0.0, True, None),
}


def _range_text(low: float | None, low_open: bool, high: float | None) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"<= {high}")
    return " and ".join(parts)


def _check_float(name: str, value: Any, low: float | None = None, low_open: bool = False,
                 high: float | None = None, what: str = "a finite number") -> None:
    ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
          and math.isfinite(float(value)))
    if ok:
        v = float(value)
        ok = (low is None or (v > low if low_open else v >= low)) and (high is None or v <= high)
    if not ok:
        raise ValueError(f"{name} must be {what} {_range_text(low, low_open, high)}, "
                         f"got {value!r}")


def validate_parameter(name: str, value: Any) -> Any:
    """Check one tracker/smoothing parameter; return it normalised (int, float or bool).

    Raises:
        ValueError: naming the parameter and the allowed range (or the known names).
    """
    if name not in PARAMETER_RANGES:
        raise ValueError(f"unknown tracking parameter {name!r}; "
                         f"known: {', '.join(PARAMETER_RANGES)}")
    kind, low, low_open, high = PARAMETER_RANGES[name]
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return bool(value)
    if kind == "int":
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer {_range_text(low, low_open, high)}, "
                             f"got {value!r}")
        _check_float(name, value, low, low_open, high, what="an integer")
        return int(value)
    _check_float(name, value, low, low_open, high)
    return float(value)


# ---------------------------------------------------------------------------------------------
# Box matching
# ---------------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Args:
        a: (N, 4) boxes x0, y0, x1, y1.
        b: (M, 4) boxes.
    Returns:
        (N, M) IoU in [0, 1] (0 where a box has no area).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(previous: np.ndarray, current: np.ndarray,
                iou_threshold: float) -> list[tuple[int, int]]:
    """Pairs (previous index, current index) of the maximum-IoU assignment with IoU >= threshold.

    Args:
        previous: (N, 4) boxes of the tracked faces.
        current: (M, 4) boxes of this frame's detections.
    """
    if len(previous) == 0 or len(current) == 0:
        return []
    iou = box_iou(previous, current)
    rows, cols = linear_sum_assignment(-iou)  # Hungarian, maximising the total IoU
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]


# ---------------------------------------------------------------------------------------------
# Tracker
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackAssignment:
    """The track of one detection of the current frame.

    Attributes:
        detection_index: index of the detection in the boxes given to :meth:`Tracker.update`.
        track_id: the face id (a decimal string).
        confirmed: seen in at least ``min_hits`` frames; only confirmed faces are published.
        hits: frames in which this track was detected.
    """

    detection_index: int
    track_id: str
    confirmed: bool
    hits: int


@dataclass
class _Track:
    track_id: str
    box: np.ndarray
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    smoother: FaceSmoother | None = field(default=None, repr=False)


ID_PREFIX = "f"
"""Track ids are ``f1``, ``f2``, ...: REP-155 face ids (and ROS topic-name tokens, TF frame
suffixes) must start with a letter, and every output (messages, TF, REP-155 topics, offline JSON
lines) uses the tracker's id as it is."""


class Tracker:
    """Stable face ids by box IoU, and per-id One-Euro smoothing.

    A detection matched to no tracked face starts a tentative track; it becomes confirmed after
    ``min_hits`` frames with a detection (then stays confirmed). A tentative track that misses a
    frame is removed at once (a one-frame false detection never gets published); a confirmed track
    is removed after more than ``max_missed`` consecutive frames without a detection. Removed ids
    are reported once, by :meth:`dropped_ids` after the update that removed them, and never reused.
    If the timestamp goes backwards (a bag restarted, simulated time reset) all tracks are dropped.

    Matching uses the last detected box of each track (no motion model): faces that move by more
    than about half their width between processed frames get a new id. Boxes whose track is known
    (``known_ids``: faces followed by their landmarks in the tracking mode, core.follow) keep it.

    Args:
        min_hits: frames with a detection before a face is confirmed (>= 1).
        max_missed: missed frames a confirmed face survives (>= 0).
        iou_threshold: least IoU of a match, in (0, 1].
        smoothing, min_cutoff, beta, pose_min_cutoff, pose_beta, d_cutoff: see
            :class:`SmoothingParameters`.
    """

    def __init__(self, min_hits: int = 2, max_missed: int = 5, iou_threshold: float = 0.3,
                 smoothing: bool = True, min_cutoff: float = 1.0, beta: float = 0.5,
                 pose_min_cutoff: float = 1.0, pose_beta: float = 1.0,
                 d_cutoff: float = 1.0) -> None:
        self.smoothing_parameters = SmoothingParameters()
        self._tracks: list[_Track] = []
        self._dropped: list[str] = []
        self._next_id = 1
        self._last_timestamp: float | None = None
        self.configure(min_hits=min_hits, max_missed=max_missed, iou_threshold=iou_threshold,
                       smoothing=smoothing, min_cutoff=min_cutoff, beta=beta,
                       pose_min_cutoff=pose_min_cutoff, pose_beta=pose_beta, d_cutoff=d_cutoff)

    def configure(self, **parameters: Any) -> None:
        """Change parameters at run time (names as in the constructor); all or none are applied.

        Filters keep their state. Raising ``min_hits`` does not unconfirm confirmed faces.

        Raises:
            ValueError: an unknown name, or a value outside its range (named in the message).
        """
        checked = {name: validate_parameter(name, value) for name, value in parameters.items()}
        for name in ("min_hits", "max_missed", "iou_threshold"):
            if name in checked:
                setattr(self, name, checked.pop(name))
        if checked:
            values = {**self.smoothing_parameters.__dict__, **checked}
            self.smoothing_parameters = SmoothingParameters(**values)
            for track in self._tracks:
                if track.smoother is not None:
                    track.smoother.set_parameters(self.smoothing_parameters)

    @property
    def track_ids(self) -> list[str]:
        """Ids of all current tracks (tentative ones included)."""
        return [t.track_id for t in self._tracks]

    def reset(self) -> None:
        """Drop every track (reported by :meth:`dropped_ids`); ids keep counting up."""
        self._dropped = [t.track_id for t in self._tracks]
        self._tracks = []
        self._last_timestamp = None

    def update(self, boxes: np.ndarray, timestamp: float,
               known_ids: list[str | None] | None = None) -> list[TrackAssignment]:
        """Match this frame's detections to the tracked faces.

        Args:
            boxes: (N, 4) x0, y0, x1, y1 in pixels (N may be 0).
            timestamp: the image's stamp in seconds.
            known_ids: (N,) the track id each box already belongs to (a face followed by its
                landmarks, core.follow), or None for a box to match by IoU; ids not tracked (any
                more) are matched by IoU too. Default: every box by IoU.
        Returns:
            One assignment per detection, in the order of ``boxes``.
        """
        boxes = _check_boxes(boxes)
        known_ids = [None] * len(boxes) if known_ids is None else list(known_ids)
        if len(known_ids) != len(boxes):
            raise ValueError(f"known_ids has {len(known_ids)} entries for {len(boxes)} boxes")
        timestamp = float(timestamp)
        if self._last_timestamp is not None and timestamp < self._last_timestamp:
            self.reset()
            dropped = self._dropped
        else:
            dropped = []
        self._last_timestamp = timestamp

        matches = _known_matches(self._tracks, known_ids)
        free_tracks = [i for i in range(len(self._tracks)) if i not in set(matches.values())]
        free_boxes = [i for i in range(len(boxes)) if i not in matches]
        previous = np.array([self._tracks[i].box for i in free_tracks]).reshape(-1, 4)
        for r, c in match_boxes(previous, boxes[free_boxes].reshape(-1, 4), self.iou_threshold):
            matches[free_boxes[c]] = free_tracks[r]
        matched_tracks = set(matches.values())

        kept: list[_Track] = []
        for index, track in enumerate(self._tracks):
            if index in matched_tracks:
                kept.append(track)
                continue
            track.missed += 1
            if track.confirmed and track.missed <= self.max_missed:
                kept.append(track)
            else:
                dropped.append(track.track_id)

        assignments = []
        for det in range(len(boxes)):
            if det in matches:
                track = self._tracks[matches[det]]
                track.box, track.hits, track.missed = boxes[det], track.hits + 1, 0
            else:
                track = _Track(track_id=f"{ID_PREFIX}{self._next_id}", box=boxes[det])
                self._next_id += 1
                kept.append(track)
            track.confirmed = track.confirmed or track.hits >= self.min_hits
            assignments.append(TrackAssignment(det, track.track_id, track.confirmed, track.hits))
        self._tracks = kept
        self._dropped = dropped
        return assignments

    def dropped_ids(self) -> list[str]:
        """Ids removed by the last :meth:`update` (or :meth:`reset`), tentative ones included."""
        return list(self._dropped)

    def smooth(self, track_id: str, timestamp: float, coefficients: np.ndarray,
               rotation: np.ndarray, translation: np.ndarray, scale: float) -> SmoothedFace:
        """Smooth one face's values with the filters of its track.

        Args:
            track_id: an id returned by the last :meth:`update`.
            timestamp: seconds (the image's stamp).
            coefficients: (E,) expression coefficients.
            rotation: (3, 3) rotation (any convention, as long as it is the same every frame).
            translation: (3,) translation (metres: the defaults of ``pose_beta`` assume them).
            scale: positive scale.
        Returns:
            The smoothed values; unchanged (copied) when smoothing is off.
        Raises:
            KeyError: ``track_id`` is not tracked.
        """
        track = next((t for t in self._tracks if t.track_id == track_id), None)
        if track is None:
            raise KeyError(f"face id {track_id!r} is not tracked (tracked: {self.track_ids})")
        if not self.smoothing_parameters.smoothing:
            return SmoothedFace(np.array(coefficients, dtype=np.float64),
                                np.array(rotation, dtype=np.float64),
                                np.array(translation, dtype=np.float64), float(scale))
        if track.smoother is None:
            track.smoother = FaceSmoother(self.smoothing_parameters)
        return track.smoother(timestamp, coefficients, rotation, translation, scale)


def _known_matches(tracks: list[_Track], known_ids: list[str | None]) -> dict[int, int]:
    """box index -> track index for the boxes whose track id is given and still tracked."""
    index = {t.track_id: i for i, t in enumerate(tracks)}
    return {b: index[i] for b, i in enumerate(known_ids) if i is not None and i in index}


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) x0, y0, x1, y1, got shape {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes contain non-finite values")
    return boxes
