"""The whole inference flow on one screen: image -> faces with expression, identity, pose, landmarks.

    detect -> crop (core.align) -> network, batched over faces -> landmarks (dynamic jaw) ->
    track + One-Euro smoothing (optional) -> template selection -> Face

Tracking mode (``follow=True``, the node's and ``face_expr video``'s default; core.follow): a
tracked face's crop comes from its previous frame's landmarks, and the detector runs only on the
first frame, every ``detection_interval_s``, and when a followed face is lost. Still images
(``face_expr reconstruct``, ``eval``) detect every image (``follow=False``).

A :class:`Face` keeps what the network said in image terms: the scaled-orthographic pose
``s R V + t`` maps model centimetres to image pixels (y up, origin at the image position of the
model origin), so it does not depend on the crop. Metric poses need the camera matrix K
(:meth:`Face.optical_pose`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .align import (DETECTOR_BOX_RULE, DETECTOR_WIDTH_RATIO, BoxRule, blend_framing, crop_from_box,
                    crop_from_landmarks, crop_shrink, framing_of, landmark_box,
                    landmark_crop_affine)
from .backend import choose_backend
from .camera import (CM_TO_M, apply_affine, core_to_optical_rotation, face_frame_rotation,
                     gaze_frame_rotation, matrix_to_euler, metric_position, pose_points)
from .detect import Detection, as_rgb_uint8, create_detector
from .detect_thread import DetectionThread
from .facemodel import FaceModel, load_face_model
from .follow import (DEFAULT_DETECTION_INTERVAL_S, DEFAULT_PRESENCE_THRESHOLD, DEFAULT_REFINE_IOU,
                     MIN_INSIDE, PRESENCE_SIDE, REFRAME_WEIGHT, FaceFollower, best_matches,
                     inside_fraction, overlapping, presence)
from .projection import LandmarkProjector
from .reduced_image import ReducedImage, image_pixels, image_size, reduction_for
from .render import camera_to_pixels
from .synthesis import DEFAULT_THRESHOLD, DEFAULT_TOP_K, select_templates, synthesize
from .weights import load_weights

log = logging.getLogger(__name__)
SELLION = 27  # iBUG landmark between the eyes: the origin of the face_<id> and gaze_<id> frames


class DeviceError(RuntimeError):
    """The requested torch device is not available."""


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when torch sees a GPU, else CPU.

    Raises:
        DeviceError: a CUDA device requested but torch sees no GPU.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but torch sees no GPU "
                           f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
    return resolved


@dataclass
class OpticalPose:
    """A face's pose in the camera's optical frame (REP-103), metres.

    position: (3,) origin of face_<id>/gaze_<id> (sellion); face_rotation, gaze_rotation: (3, 3)
    orientation of those frames; model_rotation: (3, 3) model axes in the optical frame.
    """

    position: np.ndarray
    face_rotation: np.ndarray
    gaze_rotation: np.ndarray
    model_rotation: np.ndarray


@dataclass
class Face:
    """One reconstructed face.

    Attributes:
        id: tracking id ("" without a tracker, or before the track is confirmed).
        box: (4,) detector box x0, y0, x1, y1, image pixels.
        score: detection score in [0, 1].
        names: the expression template names (53).
        coefficients: (53,) expression coefficients in [0, 1].
        selected: indices of the selected templates (>= 1), largest coefficient first.
        identity: (K,) identity coefficients.
        rotation: (3, 3) core-convention rotation (docs/conventions.md).
        translation: (2,) image pixels (u, v) where the model origin projects.
        scale: pixels per centimetre of face, in the image.
        landmarks: (68, 2) iBUG landmarks, image pixels.
        presence: probability in [0, 1] that the crop holds a whole face (the network's presence
            head); None for weights without that head.
        emotion: (7,) probabilities over :data:`core.emotions.EMOTIONS` (the network's emotion head); None for
            weights without that head.
        framing: how the face's crop was framed around its landmark box (core.align.framing_of;
            the tracking mode keeps it for the face's next crops, core.follow "Framing"); None:
            around the landmark box itself.
    """

    id: str
    box: np.ndarray
    score: float
    names: tuple[str, ...]
    coefficients: np.ndarray
    selected: np.ndarray
    identity: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    landmarks: np.ndarray
    model: FaceModel = field(repr=False)
    presence: float | None = None
    emotion: np.ndarray | None = None
    framing: BoxRule | None = field(default=None, repr=False)

    @property
    def euler_deg(self) -> np.ndarray:
        """(yaw, pitch, roll) in degrees (core convention)."""
        return matrix_to_euler(self.rotation)

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    def model_vertices(self) -> np.ndarray:
        """(V, 3) the expression mesh in model space (cm), from the selected templates only."""
        return synthesize(self.model, self.coefficients, self.selected, self.identity)

    def image_vertices(self, vertices: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) posed mesh in image pixels: x right, y down, z towards the viewer (pixels);
        ready for core.render.render_mesh. ``vertices``: :meth:`model_vertices` if already
        computed (default: synthesised here)."""
        mesh = self.model_vertices() if vertices is None else vertices
        posed = pose_points(mesh, self.rotation, np.zeros(3), self.scale)
        return camera_to_pixels(posed, self.translation)

    def optical_pose(self, camera_matrix: np.ndarray) -> OpticalPose:
        """Metric pose from the camera matrix K (3x3), weak perspective at the sellion's depth."""
        u, v = self.landmarks[SELLION]
        position = metric_position(float(u), float(v), self.scale, camera_matrix)
        return OpticalPose(position, face_frame_rotation(self.rotation),
                           gaze_frame_rotation(self.rotation), core_to_optical_rotation(self.rotation))

    def optical_vertices(self, camera_matrix: np.ndarray, vertices: np.ndarray | None = None,
                         pose: OpticalPose | None = None) -> np.ndarray:
        """(V, 3) mesh in metres in the optical frame, placed at :meth:`optical_pose`.

        ``vertices``: :meth:`model_vertices`, ``pose``: :meth:`optical_pose` of the same
        ``camera_matrix``, if already computed (default: computed here).
        """
        pose = self.optical_pose(camera_matrix) if pose is None else pose
        mesh = self.model_vertices() if vertices is None else vertices
        sellion = mesh[self.model.landmarks68[SELLION]]
        return (mesh - sellion) @ pose.model_rotation.T * CM_TO_M + pose.position


@dataclass
class Timings:
    """Milliseconds per stage of the last :meth:`Reconstructor.reconstruct` call; ``detected``:
    whether the detector ran in it (in tracking mode only some frames are detected)."""

    detect: float = 0.0
    crop: float = 0.0
    network: float = 0.0
    landmarks: float = 0.0
    track: float = 0.0
    presence: float = 0.0
    detected: bool = False
    refined: int = 0  # tracking mode: faces run a second time (core.follow.DEFAULT_REFINE_IOU)

    @property
    def total(self) -> float:
        return (self.detect + self.crop + self.network + self.landmarks + self.track
                + self.presence)


class Reconstructor:
    """Faces of an RGB image, end to end (module docstring).

    Args:
        weights: .safetensors network weights (default: the package's, or $FACE_EXPR_WEIGHTS).
        face_model: a FaceModel or a path (default search order of core.facemodel).
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        detector: core.detect backend name; detector_model_path: its local model file, if any.
        detection_threshold: detections below it are dropped; max_faces: most faces per image
            (the largest are kept).
        selection_threshold, top_k: template selection (core.synthesis.select_templates).
        tracker: a core.tracking.Tracker for stable ids and smoothing, or None.
        detector_max_side: larger images are downscaled to this longer side for detection.
        backend: what runs the network: "torch", "onnx" (ONNX Runtime, core.onnx_backend) or
            "auto" (torch on CUDA; on CPU onnx when onnxruntime is installed: core.backend).
            The choice and its reason: ``backend``, ``backend_reason``.
        onnx_model: an exported .onnx of these weights (default: the cache, exported if needed).
        network_threads: ONNX Runtime intra-op threads (None: torch.get_num_threads()).
        follow: tracking mode (module docstring, core.follow); needs a ``tracker`` (a default
            core.tracking.Tracker when None).
        detection_interval_s, presence_threshold: the tracking mode's detection schedule
            (core.follow.FaceFollower); refine_iou: its refine pass
            (core.follow.DEFAULT_REFINE_IOU).
        defer_detection: tracking mode: a frame with followed faces that needs a detection
            returns them at once and the caller runs the detection after using them
            (:meth:`detect_deferred`; the node does, after publishing). Frames without followed
            faces detect at once (nothing to hold back).
        detect_in_thread: with ``defer_detection``: :meth:`detect_deferred` starts the detection
            in a thread of its own at a lower priority (core.detect_thread) and returns; a later
            frame takes up its result (the node's default: the frames go on meanwhile).
    """

    def __init__(self, weights=None, face_model=None, device: str = "auto", detector: str = "default",
                 detector_model_path: str | None = None, detection_threshold: float = 0.5,
                 min_face_px: int = 16, max_faces: int = 10,
                 selection_threshold: float = DEFAULT_THRESHOLD, top_k: int | None = DEFAULT_TOP_K,
                 tracker=None, backend: str = "auto", onnx_model=None,
                 detector_max_side: int = 1280, follow: bool = False,
                 detection_interval_s: float = DEFAULT_DETECTION_INTERVAL_S,
                 presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD,
                 refine_iou: float = DEFAULT_REFINE_IOU, defer_detection: bool = False,
                 detect_in_thread: bool = False, network_threads: int | None = None):
        self.device = pick_device(device)
        log.info("face_expr_ros: running the network on %s", self.device)
        self.model = face_model if isinstance(face_model, FaceModel) else load_face_model(face_model)
        self.net = load_weights(weights, self.device)
        choice = choose_backend(self.net, backend, self.device, onnx_model, network_threads)
        self.network, self.backend, self.backend_reason = choice.network, choice.name, choice.reason
        log.info("face_expr_ros: network backend %s (%s)", self.backend, self.backend_reason)
        self.projector = LandmarkProjector(self.model, self.net.config.n_identity).to(self.device)
        self.detector = create_detector(detector, detector_model_path, detection_threshold,
                                        min_face_px=min_face_px, max_side=detector_max_side)
        self.max_faces = max_faces
        self.selection_threshold = selection_threshold
        self.top_k = top_k
        if follow and tracker is None:
            from .tracking import Tracker
            tracker = Tracker()
        self.tracker = tracker
        self.follower = (FaceFollower(detection_interval_s, presence_threshold, refine_iou)
                         if follow else None)
        self.defer_detection = defer_detection
        self._deferred = None
        self._detect_thread = (DetectionThread(self.detect)
                               if follow and defer_detection and detect_in_thread else None)
        self.deferred_timings = Timings()
        self.timings = Timings()

    def configure(self, detection_threshold: float | None = None, min_face_px: int | None = None,
                  detector_max_side: int | None = None, max_faces: int | None = None,
                  selection_threshold: float | None = None, top_k: int | None = None,
                  detection_interval_s: float | None = None,
                  presence_threshold: float | None = None,
                  refine_iou: float | None = None) -> None:
        """Change run-time settings (None: unchanged; ``top_k`` 0 = no limit); the next
        :meth:`reconstruct` uses them. Model, weights, backend, detector type and ``follow``
        need a new Reconstructor (the tracking-mode settings are ignored without it)."""
        if self.follower is not None:
            self.follower.configure(detection_interval_s, presence_threshold, refine_iou)
        if detection_threshold is not None:
            self.detector.score_threshold = float(detection_threshold)
        if min_face_px is not None:
            self.detector.min_face_px = int(min_face_px)
        if detector_max_side is not None:
            self.detector.max_side = int(detector_max_side)
        if max_faces is not None:
            self.max_faces = int(max_faces)
        if selection_threshold is not None:
            self.selection_threshold = float(selection_threshold)
        if top_k is not None:
            self.top_k = int(top_k) or None

    @property
    def input_size(self) -> int:
        return self.net.config.input_size

    def reconstruct(self, image: np.ndarray | ReducedImage,
                    timestamp: float | None = None) -> list[Face]:
        """All faces of an (H, W, 3) uint8 RGB image (gray (H, W) accepted), largest first.

        ``timestamp`` (seconds) drives the tracker's smoothing; default: the monotonic clock.
        A core.reduced_image.ReducedImage (a JPEG decoded at a fraction of its size, as
        :meth:`reduction_for` allows) gives faces in its full image's pixels.
        """
        if not isinstance(image, ReducedImage):  # (a ReducedImage checks its pixels itself)
            image = as_rgb_uint8(image)
        timestamp = time.monotonic() if timestamp is None else float(timestamp)
        timings = Timings()
        if self.follower is not None:
            faces, known_ids = self._follow(image, timestamp, timings)
        else:
            faces, known_ids = self.reconstruct_boxes(image, self._timed_detect(image, timings),
                                                      timings), None
        start = time.perf_counter()
        if self.tracker is not None:
            faces = self._track(faces, timestamp, known_ids)
        for face in faces:
            face.selected = select_templates(face.coefficients, self.selection_threshold, self.top_k)
        timings.track = _ms_since(start)
        self.timings = timings
        return sorted(faces, key=lambda f: -f.area)

    def detect(self, image: np.ndarray | ReducedImage) -> list[Detection]:
        """Detections, at most ``max_faces``, the largest kept (in full-image pixels)."""
        pixels, to_image = image_pixels(image)
        if to_image is None:
            detections = self.detector.detect(pixels)
        else:  # min_face_px counts full-image pixels
            detections = _detections_to_image(image, self.detector.detect(
                pixels, min_face_px=-(-self.detector.min_face_px // image.factor)))
        return sorted(detections, key=lambda d: -d.area)[: self.max_faces]

    def reduction_for(self, width: int, height: int, max_factor: int = 8) -> int:
        """How much smaller the next frame (``width`` x ``height``) may be decoded without
        changing its faces (core.reduced_image.reduction_for): tracking mode only, as far as the
        detector's ``max_side`` and the followed faces' crops (their last landmarks) allow.
        A face a detection finds in a reduced frame gets its first crop from it (one frame; its
        next crops follow this rule)."""
        if self.follower is None:
            return 1
        framed = ([(f.landmarks, f.framing) for f in self.follower.faces.values()]
                  + [(lm, framing) for lm, _, framing in self.follower.new_faces])
        shrinks = [crop_shrink(landmark_crop_affine(lm, self.input_size,
                                                    self.net.config.crop_margin, framing))
                   for lm, framing in framed]
        return reduction_for(width, height, self.detector.max_side, shrinks, max_factor)

    def _timed_detect(self, image: np.ndarray, timings: Timings) -> list[Detection]:
        start = time.perf_counter()
        detections = self.detect(image)
        timings.detect += _ms_since(start)
        timings.detected = True
        return detections

    def reconstruct_boxes(self, image: np.ndarray, detections: list[Detection],
                          timings: Timings | None = None) -> list[Face]:
        """Network and landmarks for given detections (no tracking, no selection)."""
        timings = timings or Timings()
        start = time.perf_counter()
        crops = [crop_from_box(image, d.box, self.input_size, self.net.config.crop_margin)
                 for d in detections]
        timings.crop += _ms_since(start)
        faces = self._reconstruct_crops(crops, [d.box for d in detections],
                                        [d.score for d in detections], timings)
        for face, d in zip(faces, detections):
            face.framing = framing_of(face.landmarks, DETECTOR_BOX_RULE.apply(d.box))
        return faces

    def reconstruct_landmarks(self, image: np.ndarray, landmarks: list[np.ndarray],
                              scores: list[float], timings: Timings | None = None) -> list[Face]:
        """Network and landmarks for crops framed around given (68, 2) ``landmarks`` (the training
        framing, core.align.crop_from_landmarks); a Face's box is the detector box those
        landmarks correspond to (core.align.BoxRule.invert)."""
        return self._landmark_faces(image, landmarks, scores, timings or Timings())[0]

    def _landmark_faces(self, image: np.ndarray, landmarks: list[np.ndarray], scores: list[float],
                        timings: Timings, framings: list[BoxRule | None] | None = None
                        ) -> tuple[list[Face], list]:
        """Faces of crops framed on ``landmarks``, each with its ``framings`` entry
        (core.align.crop_from_landmarks; None: the landmark box), and the crops."""
        framings = [None] * len(landmarks) if framings is None else framings
        start = time.perf_counter()
        crops = [crop_from_landmarks(image, lm, self.input_size, self.net.config.crop_margin, fr)
                 for lm, fr in zip(landmarks, framings)]
        timings.crop += _ms_since(start)
        faces = self._reconstruct_crops(crops, [np.zeros(4)] * len(crops), scores, timings)
        for face, framing in zip(faces, framings):
            face.box = detector_box(face.landmarks)
            face.framing = framing
        return faces, crops

    def _presence(self, face: Face, crop, expected_landmarks: np.ndarray, timings: Timings) -> float:
        """core.follow.presence of a followed face: the network's head, else the detector on the
        crop (timed as ``presence``)."""
        def crop_detections() -> tuple[list[Detection], np.ndarray]:
            start = time.perf_counter()
            small = cv2.resize(crop.image, (PRESENCE_SIDE, PRESENCE_SIDE),
                               interpolation=cv2.INTER_AREA)
            found = self.detector.detect(small, min_face_px=0)  # the face's size is known
            expected = detector_box(apply_affine(crop.image_to_crop, expected_landmarks))
            timings.presence += _ms_since(start)
            return found, expected * (PRESENCE_SIDE / self.input_size)

        return presence(face.presence, crop_detections)

    @torch.no_grad()
    def _reconstruct_crops(self, crops: list, boxes: list, scores: list[float],
                           timings: Timings) -> list[Face]:
        if not crops:
            return []
        start = time.perf_counter()
        # NCHW float32 in [0, 1] made in numpy: torch's elementwise ops on the CPU wake its thread
        # pool for each call (about 1 ms a frame measured on 2 CPUs), numpy runs in this thread
        planes = np.ascontiguousarray(np.stack([c.image for c in crops]).transpose(0, 3, 1, 2),
                                      dtype=np.float32)
        batch = torch.from_numpy(np.divide(planes, np.float32(255.0), out=planes)).to(self.device)
        timings.crop += _ms_since(start)
        start = time.perf_counter()
        params = self.network(batch)
        timings.network += _ms_since(start)
        start = time.perf_counter()
        crop_landmarks = self._crop_landmarks(params)
        faces = [self._face(b, s, c, params, i, crop_landmarks[i])
                 for i, (b, s, c) in enumerate(zip(boxes, scores, crops))]
        timings.landmarks += _ms_since(start)
        return faces

    def _crop_landmarks(self, params) -> np.ndarray:
        """(B, 68, 2) float64 landmarks in crop pixels: numpy on the CPU (core.projection)."""
        if self.device.type != "cpu":
            return self.projector(params, self.input_size).cpu().numpy().astype(np.float64)
        arrays = (params.identity, params.expression, params.rotation, params.translation,
                  params.scale)
        return self.projector.landmarks_np(*(t.numpy() for t in arrays), self.input_size)

    def _follow(self, image: np.ndarray, timestamp: float,
                timings: Timings) -> tuple[list[Face], list[str | None]]:
        """One frame of the tracking mode: the followed faces, plus new detections when the
        schedule (core.follow.FaceFollower) asks for them (with ``defer_detection``: only noted,
        :meth:`detect_deferred` runs them); returns the faces and their known track ids (None:
        a new face)."""
        self._take_background_detection(wait=False)
        faces, ids = self._followed_faces(image, timestamp, timings)
        unfollowed = bool(set(self.tracker.track_ids) - {i for i in ids if i is not None})
        if not self.follower.needs_detection(timestamp, unfollowed):
            return faces, ids
        if self.defer_detection and faces:  # without followed faces nothing would be held back
            if self._detect_thread is None or not self._detect_thread.busy:
                self._deferred = (image, timestamp, ids, [f.box for f in faces],
                                  [f.landmarks for f in faces])
            return faces, ids  # (a background detection still running counts as this one)
        if self._detect_thread is not None:
            self._detect_thread.discard()  # superseded by this frame's own detection
        detections = self._timed_detect(image, timings)
        self.follower.detected(timestamp)
        seen, fresh, framings = self._merge_detections(detections, ids, [f.box for f in faces],
                                                       [f.landmarks for f in faces])
        for face, framing in zip(faces, framings):  # kept with the face by _track
            if framing is not None:
                face.framing = blend_framing(face.framing, framing, REFRAME_WEIGHT)
        faces = [f for f, s in zip(faces, seen) if s] + self.reconstruct_boxes(image, fresh, timings)
        return faces, [i for i, s in zip(ids, seen) if s] + [None] * len(fresh)

    def detect_deferred(self) -> bool:
        """With ``defer_detection``: run the detection the last :meth:`reconstruct` only noted
        (after its faces were published, so detection does not hold them back). New faces are
        followed from the next frame on, and a followed face no detection saw is dropped then.
        With ``detect_in_thread`` the detection only starts here, in its thread, and the first
        frame after it has finished takes up its result. Returns whether a detection ran or
        started (timed in :attr:`deferred_timings` once taken up)."""
        if self._deferred is None:
            return False
        image, timestamp, ids, boxes, landmarks = self._deferred
        self._deferred = None
        self.follower.detected(timestamp)
        if self._detect_thread is not None:
            self._detect_thread.submit(image, (timestamp, ids, boxes, landmarks))
            return True
        timings = Timings()
        self._new_faces(image, self._timed_detect(image, timings), ids, boxes, landmarks, timings)
        return True

    def wait_background_detection(self) -> bool:
        """Take up the result of a detection running in its thread (``detect_in_thread``),
        waiting for it; returns whether there was one. (The next frame takes it up anyway, as
        soon as it has finished.)"""
        return self._take_background_detection(wait=True)

    def close(self) -> None:
        """Stop the detection thread (``detect_in_thread``), if any."""
        if self._detect_thread is not None:
            self._detect_thread.close()

    def _take_background_detection(self, wait: bool) -> bool:
        result = None if self._detect_thread is None else self._detect_thread.poll(wait)
        if result is None:
            return False
        _, ids, boxes, landmarks = result.context
        timings = Timings(detect=result.ms, detected=True)
        self._new_faces(result.image, result.detections, ids, boxes, landmarks, timings)
        return True

    def _new_faces(self, image: np.ndarray, detections: list[Detection], ids: list[str | None],
                   boxes: list, landmarks: list[np.ndarray], timings: Timings) -> None:
        """A deferred detection of ``image``, whose followed faces were ``ids`` at ``boxes`` with
        ``landmarks``: the faces no detection saw are dropped from following, the others take
        up the detector's framing (core.follow, "Framing"; relative to the face, so it holds in
        the later frames they have been followed to since), the new ones are followed from the
        next frame on (their first landmarks from this image)."""
        _, fresh, framings = self._merge_detections(detections, ids, boxes, landmarks)
        for track_id, framing in zip(ids, framings):  # already kept: the follower's state
            if framing is not None:
                self.follower.reframe(track_id, framing)
        for face in self.reconstruct_boxes(image, fresh, timings):
            self.follower.new_faces.append((face.landmarks, face.score, face.framing))
        self.deferred_timings = timings

    def _followed_faces(self, image: np.ndarray, timestamp: float,
                        timings: Timings) -> tuple[list[Face], list[str | None]]:
        """The followed faces that are still present and inside the image, and their ids; new
        faces of a deferred detection (id None) too."""
        follower = self.follower
        ids, predicted = follower.predictions(timestamp)
        scores = [follower.faces[i].score for i in ids]
        framings = [follower.faces[i].framing for i in ids]
        news = follower.new_faces[: max(self.max_faces - len(ids), 0)]
        follower.new_faces = []
        framed = predicted + [lm for lm, _, _ in news]
        faces, crops = self._landmark_faces(image, framed, scores + [sc for _, sc, _ in news],
                                            timings, framings + [fr for _, _, fr in news])
        faces, crops, framed = self._refine(image, faces, crops, framed, timings)
        width, height = image_size(image)
        lost = {i for i, face, crop, expected in zip(ids, faces, crops, framed)
                if inside_fraction(landmark_box(face.landmarks), width, height) < MIN_INSIDE
                or self._presence(face, crop, expected, timings) < follower.presence_threshold}
        follower.drop(lost)
        all_ids = list(ids) + [None] * len(news)
        keep = [k for k, i in enumerate(all_ids) if i is None or i not in lost]
        return [faces[k] for k in keep], [all_ids[k] for k in keep]

    def _refine(self, image: np.ndarray, faces: list[Face], crops: list, framed: list[np.ndarray],
                timings: Timings) -> tuple[list[Face], list, list[np.ndarray]]:
        """The refine pass (core.follow.DEFAULT_REFINE_IOU): the faces whose landmarks moved out
        of the box their crop was framed around (``framed``: the landmarks it was framed on) are
        cropped again around those landmarks and run again. Returns the faces, their crops and
        the landmarks each crop was framed around."""
        again = [k for k, (face, lm) in enumerate(zip(faces, framed))
                 if self.follower.needs_refine(face.landmarks, lm)]
        timings.refined += len(again)
        if not again:
            return faces, crops, framed
        landmarks = [faces[k].landmarks for k in again]
        refined, new_crops = self._landmark_faces(image, landmarks, [faces[k].score for k in again],
                                                  timings, [faces[k].framing for k in again])
        faces, crops, framed = list(faces), list(crops), list(framed)
        for k, face, crop, lm in zip(again, refined, new_crops, landmarks):
            faces[k], crops[k], framed[k] = face, crop, lm
        return faces, crops, framed

    def _merge_detections(self, detections: list[Detection], ids: list[str | None], boxes: list,
                          landmarks: list[np.ndarray]
                          ) -> tuple[np.ndarray, list[Detection], list[BoxRule | None]]:
        """For the followed faces ``ids`` at ``boxes`` with ``landmarks``: (N,) which of them a
        detection saw (the others are dropped from following: they left, or are being followed
        into the background), the detections of new faces, and per followed face the framing of
        the detection that saw it (core.align.framing_of of its landmarks and the detector's crop
        box; None: none did)."""
        iou = self.tracker.iou_threshold
        detected_boxes = np.array([d.box for d in detections]).reshape(-1, 4)
        followed_boxes = np.array(boxes).reshape(-1, 4)
        matches = best_matches(followed_boxes, detected_boxes, iou)
        seen = matches >= 0
        self.follower.drop([i for i, s in zip(ids, seen) if not s and i is not None])
        known = overlapping(detected_boxes, followed_boxes, iou)
        fresh = [d for d, k in zip(detections, known) if not k]
        framings = [None if m < 0 else framing_of(lm, DETECTOR_BOX_RULE.apply(detections[m].box))
                    for m, lm in zip(matches, landmarks)]
        return seen, fresh[: max(self.max_faces - int(seen.sum()), 0)], framings

    def _face(self, box, score: float, crop, params, index: int, crop_landmarks: np.ndarray) -> Face:
        p = params.detach()[index]
        to_image = crop.crop_to_image
        zoom = float(np.hypot(to_image[0, 0], to_image[1, 0]))  # image pixels per crop pixel
        centre = (self.input_size - 1) / 2.0
        t = p.translation.cpu().numpy().astype(np.float64)
        origin_crop = np.array([[centre + t[0], centre - t[1]]])  # the model origin, crop pixels
        coefficients = p.expression.cpu().numpy().astype(np.float64)
        emotion, presence = p.emotion, p.presence
        return Face(id="", box=np.asarray(box, np.float64), score=float(score),
                    names=self.model.expression_names, coefficients=coefficients,
                    selected=np.zeros(0, np.int64),
                    identity=p.identity.cpu().numpy().astype(np.float64),
                    rotation=p.rotation.cpu().numpy().astype(np.float64),
                    translation=apply_affine(to_image, origin_crop)[0],
                    scale=float(p.scale) * zoom,
                    landmarks=apply_affine(to_image, crop_landmarks), model=self.model,
                    presence=None if presence is None else float(presence),
                    emotion=None if emotion is None else emotion.cpu().numpy().astype(np.float64))

    def _track(self, faces: list[Face], timestamp: float,
               known_ids: list[str | None] | None = None) -> list[Face]:
        boxes = np.array([f.box for f in faces]).reshape(-1, 4)
        tracked = []
        for assignment in self.tracker.update(boxes, timestamp, known_ids):
            face = faces[assignment.detection_index]
            if self.follower is not None:  # raw landmarks: the next frame's crop
                self.follower.keep(assignment.track_id, face.landmarks, timestamp, face.score,
                                   face.framing)
            if not assignment.confirmed:
                continue
            face.id = assignment.track_id
            # The filters' speed thresholds assume metres: express the image position in face
            # units (pixels / pixels-per-cm = cm, then m) and back with the smoothed scale.
            position = np.append(face.translation / face.scale, 0.0) * CM_TO_M
            smooth = self.tracker.smooth(face.id, timestamp, face.coefficients, face.rotation,
                                         position, face.scale)
            face.coefficients = np.clip(smooth.coefficients, 0.0, 1.0)
            face.rotation, face.scale = smooth.rotation, float(smooth.scale)
            face.translation = np.asarray(smooth.translation)[:2] / CM_TO_M * face.scale
            tracked.append(face)
        if self.follower is not None:
            self.follower.drop(self.tracker.dropped_ids())
        return tracked


def detector_box(landmarks: np.ndarray) -> np.ndarray:
    """(4,) the detector-like box of (68, 2) landmarks (core.align.BoxRule.invert): the box a
    face followed by its landmarks reports, comparable with the detector's boxes."""
    return DETECTOR_BOX_RULE.invert(landmark_box(landmarks), DETECTOR_WIDTH_RATIO)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _detections_to_image(image: ReducedImage, detections: list[Detection]) -> list[Detection]:
    """Detections in ``image``'s reduced pixels -> full-image pixels (boxes clipped to it)."""
    to_image = image.to_image
    out = []
    for d in detections:
        corners = apply_affine(to_image, d.box.reshape(2, 2)).reshape(4)
        box = np.clip(corners, 0.0, [image.width - 1, image.height - 1] * 2)
        keypoints = None if d.keypoints is None else apply_affine(to_image, d.keypoints)
        out.append(Detection(box, d.score, keypoints))
    return out
