"""``face_expr data report``: what the training sets hold, and a contact sheet to look at.

Per set it prints the images listed, how many read, how many faces the detector finds (on a sample
with ``--limit``), where the landmarks come from (human / teacher) and how many images have them;
with a detector and landmarks it also measures the detector-box -> landmark-box rule of
:mod:`face_expr_ros.core.align`. The contact sheet shows a few images per set with the landmarks as
dots: iBUG 36 (subject's right eye outer corner) red, 45 (subject's left eye outer corner) blue, the
others green; a frontal face therefore has red on the image's left and blue on its right.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

# numpy and OpenCV are imported inside the functions: `face_expr --help` stays instant.

TILE = 160
SHEET_COLUMNS = 6
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 45, 36
COLOR_POINT, COLOR_36, COLOR_45 = (0, 230, 0), (255, 40, 40), (40, 120, 255)
COLOR_BOX = (255, 220, 0)
SET_NAMES = ("helen_train", "ytf_train", "utkface", "lfw_gray", "fer2013_train")
"""The keys of datasets.DATASETS, here so the parser does not import OpenCV (a test checks)."""


@dataclass
class SetReport:
    """Counts for one set; ``tiles`` are (TILE, TILE, 3) uint8 images for the sheet."""

    name: str
    images: int = 0
    checked: int = 0
    readable: int = 0
    skipped: dict = field(default_factory=dict)
    detected: int | None = None
    human: int = 0
    teacher: int = 0
    box_pairs: list = field(default_factory=list)
    tiles: list = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return (self.human + self.teacher) / self.images if self.images else 0.0


def run_report(data: Path | None = None, teacher_cache: Path | None = None,
               sheet: Path | None = None, limit: int | None = None,
               sets: list[str] | None = None, detector_name: str = "default") -> int:
    """``face_expr data report``: print the table (and write the sheet); returns the exit code."""
    from ..core.export import check_writable_folder, write_image
    from ..data_paths import data_root
    from . import datasets

    root = data_root(data)
    if sheet is not None:
        check_writable_folder(sheet)
    names = sets or list(datasets.DATASETS)
    cache = datasets.load_teacher_cache(teacher_cache) if teacher_cache else None
    detector, why = _detector(detector_name)
    print(f"data: {root}" + (f"; teacher cache: {teacher_cache}" if cache is not None else ""))
    print(f"detector: {detector if detector is not None else why}")
    logging.getLogger(datasets.__name__).setLevel(logging.ERROR)  # skips are counted in the table
    reports = [report_set(name, root, cache, detector, limit) for name in names]
    print_table(reports)
    print_box_rules(reports)
    if sheet is not None:
        write_image(sheet, contact_sheet(reports))
        print(f"wrote {sheet} (landmarks: green, iBUG 36 red, 45 blue; detector box yellow)")
    return 0


def _detector(name: str):
    """(detector or None, reason when None)."""
    if name == "none":
        return None, "skipped (--detector none)"
    try:
        from ..core.detect import create_detector

        return create_detector(name), ""
    except Exception as err:  # ImportError, DetectorError: the report still runs without it
        return None, f"unavailable ({err})"


def _spread(entries: list, limit: int | None) -> list:
    """``limit`` entries evenly spread over the index (all without a limit)."""
    import numpy as np

    if limit is None or limit >= len(entries):
        return entries
    return [entries[i] for i in np.linspace(0, len(entries) - 1, limit).round().astype(int)]


def report_set(name: str, root: Path, cache, detector, limit: int | None) -> SetReport:
    """Count, read, detect and draw the tiles of one set."""
    from . import datasets

    entries = datasets.build_index(name, root, cache)
    rep = SetReport(name, images=len(entries),
                    human=sum(e.landmark_source == "human" for e in entries),
                    teacher=sum(e.landmark_source == "teacher" for e in entries))
    stats = datasets.ReadStats()
    tile_every = max(1, (limit or len(entries)) // SHEET_COLUMNS)
    detected = 0
    for i, sample in enumerate(datasets.iter_samples(name, entries=_spread(entries, limit), stats=stats)):
        faces = detector.detect(sample.image) if detector is not None else []
        detected += bool(faces)
        if faces and sample.landmarks is not None:
            rep.box_pairs.append((faces[0].box, sample.landmarks))
        if i % tile_every == 0 and len(rep.tiles) < SHEET_COLUMNS:
            rep.tiles.append(draw_tile(sample, faces[0].box if faces else None))
    rep.checked, rep.readable, rep.skipped = stats.listed, stats.read, dict(stats.skipped)
    rep.detected = detected if detector is not None else None
    return rep


def print_table(reports: list[SetReport]) -> None:
    """One line per set."""
    print(f"{'set':<14} {'images':>7} {'read/checked':>13} {'faces found':>12} {'human':>6} "
          f"{'teacher':>7} {'coverage':>8}  skipped")
    for r in reports:
        faces = "-" if r.detected is None else f"{r.detected}/{r.readable}"
        skipped = ", ".join(f"{k}: {v}" for k, v in r.skipped.items()) or "none"
        print(f"{r.name:<14} {r.images:>7} {f'{r.readable}/{r.checked}':>13} {faces:>12} "
              f"{r.human:>6} {r.teacher:>7} {r.coverage:>8.1%}  {skipped}")


def print_box_rules(reports: list[SetReport]) -> None:
    """Detector box -> landmark box rule measured per set (compare with align.DETECTOR_BOX_RULE)."""
    import numpy as np

    from ..core.align import DETECTOR_BOX_RULE, calibrate_box_rule, landmark_box

    for r in reports:
        pairs = [(box, landmark_box(lm)) for box, lm in r.box_pairs
                 if box[0] < (lm[:, 0].min() + lm[:, 0].max()) / 2 < box[2]]  # the same face
        if len(pairs) >= 5:
            rule = calibrate_box_rule(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
            print(f"{r.name}: landmark box / detector box on {len(pairs)} faces: side x{rule.scale:.3f}, "
                  f"centre ({rule.dx:+.3f}, {rule.dy:+.3f}) x side  (in use: x{DETECTOR_BOX_RULE.scale:.3f}, "
                  f"({DETECTOR_BOX_RULE.dx:+.3f}, {DETECTOR_BOX_RULE.dy:+.3f}))")


def draw_tile(sample, box=None) -> np.ndarray:
    """(TILE, TILE, 3) uint8: the face (landmark crop, else the whole image) with dots drawn."""
    import numpy as np

    import cv2

    from ..core.align import crop_from_landmarks
    from ..core.camera import apply_affine, crop_affine

    h, w = sample.image.shape[:2]
    if sample.landmarks is not None:
        crop = crop_from_landmarks(sample.image, sample.landmarks, TILE, margin=0.5)
        tile, to_tile = crop.image.copy(), crop.image_to_crop
    else:
        to_tile = crop_affine((-0.5, -0.5, w - 0.5, h - 0.5), TILE)
        tile = cv2.warpAffine(sample.image, to_tile, (TILE, TILE), flags=cv2.INTER_LINEAR)
    if box is not None:
        corners = apply_affine(to_tile, np.asarray(box, np.float64).reshape(2, 2))
        cv2.rectangle(tile, *(tuple(int(round(v)) for v in c) for c in corners), COLOR_BOX, 1)
    if sample.landmarks is not None:
        points = apply_affine(to_tile, sample.landmarks.astype(np.float64))
        for k, (x, y) in enumerate(points):
            color = COLOR_36 if k == RIGHT_EYE_OUTER else COLOR_45 if k == LEFT_EYE_OUTER else COLOR_POINT
            cv2.circle(tile, (int(round(x * 4)), int(round(y * 4))), 8 if color != COLOR_POINT else 5,
                       color, -1, cv2.LINE_AA, shift=2)  # shift=2: quarter-pixel centres
    source = sample.landmark_source or "no landmarks"
    cv2.putText(tile, source, (3, TILE - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                cv2.LINE_AA)
    return tile


def contact_sheet(reports: list[SetReport]) -> np.ndarray:
    """(rows * (TILE + 18), SHEET_COLUMNS * TILE, 3) uint8: one labelled row of tiles per set."""
    import numpy as np

    import cv2

    rows = []
    for r in reports:
        title = np.full((18, SHEET_COLUMNS * TILE, 3), 40, np.uint8)
        cv2.putText(title, f"{r.name}: {r.images} images, {r.coverage:.0%} with landmarks", (4, 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles = r.tiles + [np.zeros((TILE, TILE, 3), np.uint8)] * (SHEET_COLUMNS - len(r.tiles))
        rows += [title, np.hstack(tiles)]
    return np.vstack(rows) if rows else np.zeros((TILE, TILE, 3), np.uint8)
