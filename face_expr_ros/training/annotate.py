"""``face_expr annotate``: teacher landmarks for image folders, cached in an append-only JSONL file.

Cache format (others read it; keep it): ``CACHE/annotations.jsonl``, one JSON object per line::

    {"set": "utkface", "image": "images/x.jpg", "status": "ok" | "no_face" | "failed",
     "face": "largest" | "labels", "teacher": "mediapipe", "box": [x0, y0, x1, y1], "score": 0.93,
     "landmarks68": [[x, y], ...68], "blendshapes": {"jawOpen": 0.1, ...},
     "transform": [[...4], ...4]}

``set`` is the annotated folder's name, ``image`` the path relative to it (POSIX), coordinates are
0-based pixels of the image as stored, iBUG order. ``box``, ``score`` and ``landmarks68`` are null
unless ``status`` is ``ok``; a ``failed`` record carries ``error``. ``teacher`` is
``"dlib/assumed-box"`` where the detector found no face in a thumbnail and dlib's points were
predicted in a box of the whole image (see :mod:`face_expr_ros.training.teacher`). ``blendshapes``
(MediaPipe's scores by name) and ``transform`` (MediaPipe's facial transformation matrix, 4x4 as it
returns it; ``datasets.teacher_rotation`` converts it) are present when the teacher gave them.

One face is kept per image. ``face`` says which: ``"largest"``, or, for an image that holds human
landmarks in a known set (helen_train, ytf_train: ``datasets.DATASETS``), ``"labels"``: the face
whose landmark box overlaps the labels' box most (IoU above :data:`MIN_LABEL_IOU`; none:
``no_face``), so that the teacher's rotation and scores belong to the labelled person, and
``face_expr eval`` scores the teacher on the face the labels are of (a photo can hold several
people; the largest is not always the labelled one). Records written before ``face`` existed
(the largest face) are redone for labelled images by the next run.

The file is append-only and written by the main process alone (workers only compute): a run resumes
by skipping images already present, later lines win, and a truncated last line (a crash mid-write)
is ignored. The one reader of the file is :func:`face_expr_ros.training.datasets.load_teacher_cache`.
"""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

# numpy/OpenCV (``datasets``) are imported inside functions: the CLI registers this command at start.

STATUSES = ("ok", "no_face", "failed")
CACHED = "cached"
"""Key of :func:`annotate_folders`' counts: records already in the cache before the run."""
REDONE = "redone"
"""Key of :func:`annotate_folders`' counts: cached labelled images redone to pick the labelled face."""
MIN_LABEL_IOU = 0.3
"""A teacher face is the labelled one when its landmark box's IoU with the labels' is above this."""


# ---------------------------------------------------------------------------------------------
# Workers: one teacher per process, created once
# ---------------------------------------------------------------------------------------------
_TEACHER = None


def _init_worker(factory: Callable) -> None:
    global _TEACHER
    _TEACHER = factory()


def annotate_image(teacher, folder: Path, set_name: str, image: str,
                   labels_box: tuple[float, ...] | None = None) -> dict:
    """The cache record of one image (never raises for a bad image: status ``failed``).

    Args:
        labels_box: (x0, y0, x1, y1) of the image's human landmarks: keep the teacher's face on
            them (:func:`face_on_labels`) instead of the largest.
    """
    from .datasets import load_image_rgb

    record = {"set": set_name, "image": image, "status": "failed",
              "face": "largest" if labels_box is None else "labels", "teacher": teacher.name,
              "box": None, "score": None, "landmarks68": None}
    try:
        faces = teacher(load_image_rgb(folder / image))
    except Exception as err:  # a corrupt file or a teacher error must not stop 50k images
        record["error"] = f"{type(err).__name__}: {err}"
        return record
    if labels_box is not None:
        face = face_on_labels(faces, labels_box)
    else:
        face = faces[0] if faces else None  # teachers sort by area, largest first
    if face is None:
        record["status"] = "no_face"
        if faces:
            record["faces_elsewhere"] = len(faces)
        return record
    record.update(status="ok", teacher=face.source or teacher.name,
                  box=[round(float(v), 2) for v in face.box], score=round(float(face.score), 4),
                  landmarks68=[[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks68])
    if face.blendshapes:
        record["blendshapes"] = {name: round(value, 4) for name, value in face.blendshapes.items()}
    if face.transform is not None:
        record["transform"] = [[round(float(v), 5) for v in row] for row in face.transform]
    return record


def face_on_labels(faces: list, labels_box: tuple[float, ...]):
    """The face of ``faces`` whose landmark box overlaps ``labels_box`` most, None when no IoU is
    above :data:`MIN_LABEL_IOU` (the teacher found only other people, or nobody)."""
    import numpy as np

    from ..core.align import landmark_box
    from .teacher import best_overlap

    best = best_overlap(np.asarray(labels_box, np.float64),
                        [landmark_box(face.landmarks68) for face in faces], MIN_LABEL_IOU)
    return None if best is None else faces[best]


def labels_boxes(folder: Path, set_name: str) -> dict[str, tuple[float, ...]]:
    """Image (path relative to ``folder``, POSIX) -> (x0, y0, x1, y1) of its human landmarks, for
    a set of ``datasets.DATASETS`` that has them; {} for any other folder."""
    from ..core.align import landmark_box
    from .datasets import DATASETS

    if set_name not in DATASETS:
        return {}
    return {entry.path.relative_to(folder).as_posix(): tuple(landmark_box(entry.landmarks).tolist())
            for entry in DATASETS[set_name](folder)
            if entry.landmarks is not None and entry.landmark_source == "human"}


def _annotate_job(job: tuple) -> dict:
    folder, set_name, image, labels_box = job
    return annotate_image(_TEACHER, Path(folder), set_name, image, labels_box)


def annotate_folders(folders: Iterable[str | os.PathLike], cache_dir: str | os.PathLike,
                     teacher_factory: Callable, workers: int = 1, limit: int | None = None,
                     retry_failed: bool = False, progress: bool = True) -> Counter:
    """Annotate every image of ``folders`` not yet in the cache.

    Returns status -> count of this run's records, plus :data:`CACHED` -> the number of records
    (any set) the cache held before the run and :data:`REDONE` -> how many of this run's images
    were cached with the largest face and redone on their labels (see the module's docstring).

    Args:
        teacher_factory: picklable callable returning a teacher (called once per worker process).
        workers: processes; 1 runs in this process.
        limit: at most this many new images per folder (for trials).
        retry_failed: also redo images whose cached status is ``failed``.
    """
    from tqdm import tqdm

    from .datasets import TEACHER_FILE, image_files, load_teacher_cache

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    done = load_teacher_cache(cache, missing_ok=True)
    jobs, redone = [], 0
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder")
        set_name = folder.resolve().name
        images = sorted(p.relative_to(folder).as_posix() for p in image_files(folder))
        boxes = labels_boxes(folder, set_name)
        on_largest = {image for image in boxes  # cached before records said which face they kept
                      if (set_name, image) in done and done[(set_name, image)].get("face") != "labels"}
        todo = [image for image in images
                if (set_name, image) not in done or image in on_largest
                or (retry_failed and done[(set_name, image)].get("status") == "failed")][:limit]
        jobs += [(str(folder), set_name, image, boxes.get(image)) for image in todo]
        redone += len(on_largest.intersection(todo))
    counts: Counter = Counter({status: 0 for status in STATUSES})
    counts[CACHED], counts[REDONE] = len(done), redone
    path = cache / TEACHER_FILE
    _repair_tail(path)
    with open(path, "a", encoding="utf-8") as out, \
            tqdm(total=len(jobs), unit="img", disable=not progress, file=sys.stderr) as bar:
        for record in _run(jobs, teacher_factory, workers):
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            out.flush()  # a crash loses at most the line being written
            counts[record["status"]] += 1
            bar.update()
    return counts


def _repair_tail(path: Path) -> None:
    """End a truncated last line with a newline so the next record starts on its own line."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _run(jobs: list, teacher_factory: Callable, workers: int) -> Iterator[dict]:
    if not jobs:
        return
    if workers <= 1:
        teacher = teacher_factory()
        try:
            for folder, set_name, image, labels_box in jobs:
                yield annotate_image(teacher, Path(folder), set_name, image, labels_box)
        finally:
            teacher.close()
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fork would copy mediapipe's native threads
    with context.Pool(workers, _init_worker, (teacher_factory,)) as pool:
        yield from pool.imap_unordered(_annotate_job, jobs, chunksize=16)


# ---------------------------------------------------------------------------------------------
# Teachers for worker processes
# ---------------------------------------------------------------------------------------------
class TeacherFactory:
    """Picklable ``create_teacher(name)`` for worker processes."""

    def __init__(self, name: str, assume_crop_below: int):
        self.name, self.assume_crop_below = name, assume_crop_below

    def __call__(self):
        from .teacher import create_teacher

        return create_teacher(self.name, self.assume_crop_below)
