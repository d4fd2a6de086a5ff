"""Readers for the training face sets: images, 68 iBUG landmarks, labels, splits.

Torch-free: a training ``Dataset`` is built later on top of :func:`build_index` (cheap: paths,
landmarks and labels, no pixels) and :func:`load_sample` (reads one image). Formats, coordinate bases
and splits are described in ``docs/data.md``.

Pixel convention (docs/conventions.md): x right, y down, 0-based, pixel centres at integers.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, NamedTuple

import cv2
import numpy as np

from ..core.imageio import ImageLoadError, check_not_truncated
from ..data_paths import data_root

log = logging.getLogger(__name__)

N_LANDMARKS = 68
LandmarkSource = Literal["human", "teacher"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# The shared ytf keypoints.csv is 1-based: measured against a teacher landmarker (docs/data.md).
YTF_COORDINATE_BASE = 1
# The shared helen .pts copies are 0-based (converted from 300-W's 1-based files).
HELEN_COORDINATE_BASE = 0

# FER2013 folder names and LFW emotions.csv use different words; labels use the LFW nouns.
EMOTION_NAMES = ("neutral", "happiness", "surprise", "anger", "sadness", "disgust", "fear", "contempt")
_FER_TO_EMOTION = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                   "neutral": "neutral", "sad": "sadness", "surprise": "surprise"}


ImageReadError = ImageLoadError
"""A file that is not a readable image; ``reason`` is the short kind used for counting."""


@dataclass
class FaceSample:
    """One face image with what is known about it.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        landmarks: (68, 2) float32 iBUG points in image pixels (0-based), or None.
        set_name: the set it came from (a key of :data:`DATASETS`).
        path: the image file.
        labels: e.g. {"emotion": "happiness"}, {"age": 31, "gender": 0, "race": 2}; may be empty.
        landmark_source: "human", "teacher", or None without landmarks.
    """

    image: np.ndarray
    landmarks: np.ndarray | None
    set_name: str
    path: Path
    labels: dict = field(default_factory=dict)
    landmark_source: LandmarkSource | None = None


class IndexEntry(NamedTuple):
    """One row of the light-weight index: no pixels, enough to load a :class:`FaceSample`.

    ``landmarks`` is (68, 2) float32 image pixels (0-based) or None.
    """

    path: Path
    landmarks: np.ndarray | None
    labels: dict
    landmark_source: LandmarkSource | None
    set_name: str
    blendshapes: np.ndarray | None = None  # (52,) teacher scores, core.arkit.ARKIT_NAMES order
    rotation: np.ndarray | None = None     # (3, 3) the teacher's head rotation, core convention


@dataclass
class ReadStats:
    """Counts of what a pass over a set read and skipped (skip reasons by kind)."""

    listed: int = 0
    read: int = 0
    skipped: Counter = field(default_factory=Counter)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


# ---------------------------------------------------------------------------------------------
# File formats
# ---------------------------------------------------------------------------------------------
def read_pts(path: str | os.PathLike, base: int = 0) -> np.ndarray:
    """Read an iBUG ``.pts`` file, with or without its ``version/n_points/{ }`` header.

    Args:
        path: the file.
        base: the file's coordinate base: 0 for the shared copies (default), 1 for original 300-W
            files; ``base`` is subtracted so the result is 0-based.
    Returns:
        (N, 2) float32 points (x, y), 0-based image pixels.
    Raises:
        ValueError: malformed file, or ``n_points`` disagrees with the rows.
    """
    declared = None
    rows: list[list[float]] = []
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line in "{}":
            continue
        key, sep, value = line.partition(":")
        if sep:
            if key.strip() == "n_points":
                declared = int(value)
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}: expected 'x y' per line, got {raw!r}")
        rows.append([float(parts[0]), float(parts[1])])
    if declared is not None and declared != len(rows):
        raise ValueError(f"{path}: header says n_points {declared}, found {len(rows)} points")
    if not rows:
        raise ValueError(f"{path}: no points")
    return np.asarray(rows, np.float32) - np.float32(base)


def read_keypoints_csv(path: str | os.PathLike, base: int = YTF_COORDINATE_BASE
                       ) -> dict[str, np.ndarray]:
    """Read a keypoints CSV (``image,x0,y0,...,x67,y67``, one row per image), as ytf_train's.

    Args:
        base: the file's coordinate base, subtracted (default: the finding for ytf, 0).
    Returns:
        image name -> (68, 2) float32 0-based pixels; a malformed row is skipped with a warning.
    """
    out: dict[str, np.ndarray] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or len(header) != 1 + 2 * N_LANDMARKS:
            raise ValueError(f"{path}: expected a header 'image,x0,y0,..,x67,y67', got {header}")
        for number, row in enumerate(reader, start=2):
            try:
                values = np.asarray(row[1:], np.float32).reshape(N_LANDMARKS, 2)
            except ValueError:
                log.warning("%s line %d: malformed row skipped", path, number)
                continue
            out[row[0]] = values - np.float32(base)
    return out


def load_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read any image as (H, W, 3) uint8 RGB: grayscale, RGBA (alpha dropped), palette and
    16-bit images are converted.

    Raises:
        ImageReadError: empty, truncated, corrupt or not an image.
    """
    data = Path(path).read_bytes()
    if not data:
        raise ImageReadError(path, "empty file")
    check_not_truncated(path, data)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        decoded = None
    if decoded is None or decoded.size == 0:
        raise ImageReadError(path, "not a readable image")
    return _to_rgb8(decoded, path)


def _to_rgb8(decoded: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """OpenCV's (H, W), (H, W, 1|3|4) BGR(A) of uint8/uint16/float -> (H, W, 3) uint8 RGB."""
    image = decoded
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # keep the top byte: 65535 -> 255
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float64), 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, 2))
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise ImageReadError(path, f"{image.shape[2]} channels")


def image_files(folder: Path) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`, any case) under ``folder`` (recursive), sorted for a
    stable order. Used by the set indexes here and by ``face_expr annotate``."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


# ---------------------------------------------------------------------------------------------
# The five shared sets: set folder -> index
# ---------------------------------------------------------------------------------------------
def _index_helen(folder: Path) -> list[IndexEntry]:
    """helen_train: images/NAME.jpg + landmarks/NAME.pts (human, 0-based copies)."""
    entries = []
    for path in image_files(folder / "images"):
        pts = folder / "landmarks" / (path.stem + ".pts")
        landmarks = None
        if pts.is_file():
            try:
                landmarks = _check_68(read_pts(pts, HELEN_COORDINATE_BASE), pts)
            except ValueError as err:
                log.warning("helen_train: landmarks ignored: %s", err)
        entries.append(IndexEntry(path, landmarks, {}, "human" if landmarks is not None else None,
                                  "helen_train"))
    return entries


def _index_ytf(folder: Path) -> list[IndexEntry]:
    """ytf_train: images/NAME.jpg + keypoints.csv (human-placed, noisy)."""
    table = read_keypoints_csv(folder / "keypoints.csv") if (folder / "keypoints.csv").is_file() else {}
    entries = []
    for path in image_files(folder / "images"):
        landmarks = table.get(path.name)
        labels = {"person": m.group(1)} if (m := _YTF_PERSON.match(path.stem)) else {}
        entries.append(IndexEntry(path, landmarks, labels,
                                  "human" if landmarks is not None else None, "ytf_train"))
    return entries


def _index_lfw(folder: Path) -> list[IndexEntry]:
    """lfw_gray: images/Person_Name_0001.jpg + emotions.csv (image,emotion) for most."""
    emotions: dict[str, str] = {}
    if (folder / "emotions.csv").is_file():
        with open(folder / "emotions.csv", newline="") as f:
            for row in csv.DictReader(f):
                if row.get("image") and row.get("emotion"):
                    emotions[row["image"]] = row["emotion"].strip().lower()
    entries = []
    for path in image_files(folder / "images"):
        labels: dict = {"person": _LFW_PERSON.sub("", path.stem)}
        if path.name in emotions:
            labels["emotion"] = emotions[path.name]
        entries.append(IndexEntry(path, None, labels, None, "lfw_gray"))
    return entries


def _index_utkface(folder: Path) -> list[IndexEntry]:
    """utkface: images/AGE_GENDER_RACE_DATE.jpg.chip.jpg (labels in the name; some names lack some)."""
    return [IndexEntry(p, None, utkface_labels(p.name), None, "utkface")
            for p in image_files(folder / "images")]


def _index_fer(folder: Path) -> list[IndexEntry]:
    """fer2013_train: images/EMOTION/NAME.jpg."""
    entries = []
    for path in image_files(folder / "images"):
        emotion = _FER_TO_EMOTION.get(path.parent.name.lower())
        entries.append(IndexEntry(path, None, {"emotion": emotion} if emotion else {}, None,
                                  "fer2013_train"))
    return entries


def utkface_labels(name: str) -> dict:
    """``"26_1_3_20170117...jpg.chip.jpg"`` -> {"age": 26, "gender": 1, "race": 3, "date": "2017..."}.

    UTKFace: gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. Fields
    that are missing or not numbers are left out.
    """
    parts = name.split(".")[0].split("_")
    labels: dict = {}
    for key, value in zip(("age", "gender", "race"), parts[:3]):
        if value.isdigit():
            labels[key] = int(value)
    if len(parts) > 3 and parts[3]:
        labels["date"] = parts[3]
    return labels


def _check_68(points: np.ndarray, where: Path) -> np.ndarray:
    if points.shape != (N_LANDMARKS, 2):
        raise ValueError(f"{where}: expected 68 points, got {len(points)}")
    return points


_YTF_PERSON = re.compile(r"^([A-Za-z][A-Za-z'.-]*(?:_[A-Za-z][A-Za-z'.-]*)+)_\d+$")
_LFW_PERSON = re.compile(r"_\d{4}$")

DATASETS: dict[str, Callable[[Path], list[IndexEntry]]] = {
    "helen_train": _index_helen,
    "ytf_train": _index_ytf,
    "utkface": _index_utkface,
    "lfw_gray": _index_lfw,
    "fer2013_train": _index_fer,
}
"""Set name (its folder in the data root) -> index builder ``(set folder) -> list[IndexEntry]``."""


# ---------------------------------------------------------------------------------------------
# Teacher landmarks (a cache folder with annotations.jsonl, written by the annotate step)
# ---------------------------------------------------------------------------------------------
TEACHER_FILE = "annotations.jsonl"


def load_teacher_cache(folder: str | os.PathLike,
                       missing_ok: bool = False) -> dict[tuple[str, str], dict]:
    """Read ``folder/annotations.jsonl``: (set, image path relative to the set folder) -> record.

    Later lines for the same image win; a truncated last line (an interrupted writer) is ignored;
    another malformed line is skipped with a warning. The one reader of the cache (training,
    evaluation and ``face_expr annotate``, which writes it).

    Args:
        missing_ok: return {} when there is no ``annotations.jsonl`` yet (a first annotate run)
            instead of raising FileNotFoundError.
    """
    path = Path(folder) / TEACHER_FILE
    if not path.is_file():
        if missing_ok:
            return {}
        raise FileNotFoundError(f"teacher cache {folder}: no {TEACHER_FILE}")
    records: dict[tuple[str, str], dict] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (str(record["set"]), str(record["image"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            if number < len(lines):  # the last piece without "\n" may be a half-written line
                log.warning("%s line %d: malformed record skipped", path, number)
            continue
        records[key] = record
    return records


def teacher_record(cache: dict[tuple[str, str], dict], entry: IndexEntry,
                   set_folder: Path) -> dict | None:
    """``entry``'s record in a teacher cache (load_teacher_cache), None when it has none."""
    return cache.get((entry.set_name, entry.path.relative_to(set_folder).as_posix()))


def mediapipe_landmarks(record: dict | None) -> np.ndarray | None:
    """The teacher's own (68, 2) landmarks: a MediaPipe record's; None for no face and for
    dlib's points in an assumed box (FER2013 thumbnails), which are not the teacher's output."""
    points = teacher_landmarks(record)
    return points if points is not None and record.get("teacher") == "mediapipe" else None


def teacher_landmarks(record: dict | None) -> np.ndarray | None:
    """(68, 2) float32 pixels of an ``"ok"`` teacher record; None for no_face/failed/bad shapes."""
    if not record or record.get("status") != "ok":
        return None
    points = np.asarray(record.get("landmarks68", ()), np.float32)
    return points if points.shape == (N_LANDMARKS, 2) and np.all(np.isfinite(points)) else None


def teacher_blendshapes(record: dict | None) -> np.ndarray | None:
    """(52,) float32 teacher blendshape scores in ARKit order (NaN where the teacher has none,
    e.g. tongueOut), with the teacher's left/right read as the subject's (see
    ``teacher.MEDIAPIPE_SIDES_MIRRORED``); None when the record has none."""
    from ..core.arkit import ARKIT_NAMES
    from .teacher import mediapipe_name_for

    if not record or record.get("status") != "ok" or not record.get("blendshapes"):
        return None
    scores = record["blendshapes"]
    values = [scores.get(mediapipe_name_for(name), np.nan) for name in ARKIT_NAMES]
    out = np.asarray(values, np.float32)
    return out if np.isfinite(out).sum() >= 40 and np.nanmin(out) >= 0 else None


def teacher_rotation(record: dict | None) -> np.ndarray | None:
    """(3, 3) float32 head rotation in the core convention (docs/conventions.md) from the
    teacher's facial transformation matrix, or None when the record has none.

    MediaPipe's matrix maps its canonical face (x the subject's left, y up, z out of the face) to
    a camera frame with x right, y up, z towards the viewer: the core frames, so its rotation part
    is the core rotation as it is (measured on rendered turned faces: test_training_teacher.py,
    docs/teacher.md, "Head pose"); it is re-orthonormalised (the matrix carries a scale).
    """
    if not record or record.get("status") != "ok" or not record.get("transform"):
        return None
    matrix = np.asarray(record["transform"], np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        return None
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    rotation = u @ vt
    return rotation.astype(np.float32) if np.linalg.det(rotation) > 0 else None


def merge_teacher(entries: list[IndexEntry], set_folder: Path,
                  cache: dict[tuple[str, str], dict]) -> list[IndexEntry]:
    """Fill missing landmarks from the teacher cache (human landmarks are kept where present) and
    attach the teacher's blendshape scores and head rotation to every entry that has them."""
    merged = []
    for entry in entries:
        record = teacher_record(cache, entry, set_folder)
        if entry.landmarks is None:
            points = teacher_landmarks(record)
            if points is not None:
                entry = entry._replace(landmarks=points, landmark_source="teacher")
        scores = teacher_blendshapes(record)
        if scores is not None:
            entry = entry._replace(blendshapes=scores)
        rotation = teacher_rotation(record)
        if rotation is not None:
            entry = entry._replace(rotation=rotation)
        merged.append(entry)
    return merged


# ---------------------------------------------------------------------------------------------
# Index, samples, splits
# ---------------------------------------------------------------------------------------------
def build_index(set_name: str, root: str | os.PathLike | None = None,
                teacher_cache: str | os.PathLike | dict | None = None) -> list[IndexEntry]:
    """The light-weight index of one set (no pixels read).

    Args:
        set_name: a key of :data:`DATASETS`.
        root: the data root (default: :func:`face_expr_ros.data_paths.data_root`).
        teacher_cache: a cache folder, or an already loaded :func:`load_teacher_cache` dict.
    """
    if set_name not in DATASETS:
        raise KeyError(f"unknown set {set_name!r}; known: {', '.join(DATASETS)}")
    folder = set_folder(set_name, root)
    entries = DATASETS[set_name](folder)
    if teacher_cache is not None:
        cache = teacher_cache if isinstance(teacher_cache, dict) else load_teacher_cache(teacher_cache)
        entries = merge_teacher(entries, folder, cache)
    return entries


def set_folder(set_name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of ``set_name`` in the data root; FileNotFoundError if it is not there."""
    folder = data_root(root) / set_name
    if not folder.is_dir():
        raise FileNotFoundError(f"set {set_name!r}: no folder {folder}")
    return folder


def load_sample(entry: IndexEntry) -> FaceSample:
    """Read the image of ``entry``. Raises ImageReadError (or OSError) for a bad file."""
    return FaceSample(load_image_rgb(entry.path), entry.landmarks, entry.set_name, entry.path,
                      dict(entry.labels), entry.landmark_source)


def iter_samples(set_name: str, root: str | os.PathLike | None = None,
                 teacher_cache: str | os.PathLike | dict | None = None,
                 entries: list[IndexEntry] | None = None,
                 stats: ReadStats | None = None) -> Iterator[FaceSample]:
    """Yield the readable samples of a set in index order; bad files are skipped with a warning.

    Args:
        entries: iterate these (e.g. a subset of :func:`build_index`) instead of the whole set.
        stats: counts listed / read / skipped (by reason) when given.
    """
    if entries is None:
        entries = build_index(set_name, root, teacher_cache)
    stats = stats if stats is not None else ReadStats()
    for entry in entries:
        stats.listed += 1
        try:
            sample = load_sample(entry)
        except OSError as err:  # ImageReadError, unreadable file
            stats.skipped[getattr(err, "reason", type(err).__name__)] += 1
            log.warning("skipped %s", err)
            continue
        stats.read += 1
        yield sample


def subject_of(set_name: str, path: str | os.PathLike) -> str:
    """The key that groups a subject's images, so a person never sits in both splits.

    helen: the photo id before ``_`` (``100040721_1`` and ``_2`` share a photo); ytf: the person
    name before the frame number (names that are not ``First_Last_N`` stand alone); lfw: the person
    name before ``_0001``; utkface, fer2013: no subject is known, the file name itself.
    """
    stem = Path(path).name.split(".")[0]
    if set_name == "helen_train":
        return stem.split("_")[0]
    if set_name == "ytf_train" and (m := _YTF_PERSON.match(stem)):
        return m.group(1)
    if set_name == "lfw_gray":
        return _LFW_PERSON.sub("", stem)
    return Path(path).name


def split_of(sample: FaceSample | IndexEntry, val_fraction: float = 0.1) -> Literal["train", "val"]:
    """Deterministic split by a hash of the subject key (:func:`subject_of`), stable across runs
    and machines (SHA-1, not Python's salted ``hash``)."""
    key = f"{sample.set_name}/{subject_of(sample.set_name, sample.path)}"
    digest = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big")
    return "val" if digest / 2.0**64 < val_fraction else "train"
