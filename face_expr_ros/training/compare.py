"""Side-by-side evaluation: one or more sets of weights against the teacher, on the same faces.

``face_expr eval --teacher-cache DIR [--compare W2 ...]`` runs each network through the inference
path (core.reconstruct.Reconstructor: detector -> crop -> network) on the validation subjects
(``datasets.split_of``) and scores the teacher (MediaPipe Face Landmarker) from its cached outputs
for the same images (``face_expr annotate``): its 478 points mapped to 68 (training/landmark_map.py),
its 52 blendshape scores, its facial transformation matrix (``datasets.teacher_rotation``).

Rows (one column per network, one for the teacher):

- NME68 / NME51 (outer inter-ocular), median, failure rate on helen_train and ytf_train (human
  labels). An image where a column has no face counts as NME 1.0 in that column. Face by face
  against the teacher: the share of faces where a network is closer to the labels, and the
  median of its NME68 minus the teacher's (one face taken from another person moves a mean by
  more than a whole network's improvement; these rows do not move).
- smile AUC (mouthSmile L + R, happiness vs neutral, lfw_gray) and jawOpen AUC (surprise vs
  neutral, fer2013_train and lfw_gray).
- 7-class emotion linear probe: standardised logistic regression, 5-fold, folds grouped by subject
  where the set has subjects (lfw_gray: the person), on fer2013_train and lfw_gray; ours on the 53
  coefficients, the teacher on its scores. Each column uses the faces it has output for (n shown).
- the emotion head's accuracy (networks with one).
- head pose against the teacher (helen, ytf, lfw validation faces both found): mean absolute
  difference per angle and the slope of the least-squares line of ours against the teacher's.
- agreement with the teacher's blendshapes (mean |diff|, mean per-shape correlation).
- presence AUC: face crops against no-face / half-face crops (training/crop_cache.py) of the
  validation subjects (networks with a presence head, when the crop caches exist).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.emotions import emotion_index
from .evaluate import auc, largest_faces
from .metrics import REGIONS

log = logging.getLogger(__name__)
LANDMARK_SETS = ("helen_train", "ytf_train")
POSE_SETS = ("helen_train", "ytf_train", "lfw_gray")
PROBE_SETS = ("fer2013_train", "lfw_gray")
ANGLES = ("yaw", "pitch", "roll")
FAILURE_NME = 0.10


@dataclass
class FaceOutput:
    """What one column says about one face (None fields: not given)."""

    landmarks: np.ndarray | None = None      # (68, 2) image pixels
    arkit: np.ndarray | None = None          # (52,) ARKit blendshapes (NaN where none)
    features: np.ndarray | None = None       # the probe's input: ours 53 coefficients, teacher scores
    euler: np.ndarray | None = None          # (3,) yaw, pitch, roll degrees (core convention)
    emotion: np.ndarray | None = None        # (7,) emotion head probabilities
    presence: float | None = None


@dataclass
class Column:
    """One column of the table: outputs per (set, image path)."""

    name: str
    faces: dict[tuple[str, str], FaceOutput] = field(default_factory=dict)
    negatives: np.ndarray | None = None      # presence scores of the no-face / half-face crops


# ---------------------------------------------------------------------------------------------
# Metrics on plain arrays (tested on constructed data)
# ---------------------------------------------------------------------------------------------
def nme_summary(errors68: list[float], errors51: list[float],
                regions: dict[str, list[float]] | None = None) -> dict:
    """Mean / median NME and failure rate; with ``regions`` (name -> per-face NME) also
    ``nme_<region>`` means."""
    a, b = np.asarray(errors68, np.float64), np.asarray(errors51, np.float64)
    if not len(a):
        return {"faces": 0}
    return {"faces": len(a), "nme68": float(a.mean()), "nme51": float(b.mean()),
            "nme68_median": float(np.median(a)), "failure_rate": float((a > FAILURE_NME).mean()),
            **{f"nme_{k}": float(np.mean(v)) for k, v in (regions or {}).items()}}


def probe_accuracy(features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
                   folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a standardised multinomial logistic regression.

    Folds are stratified by label and, with ``groups``, never split a group (a subject) across
    train and test. Constant features are dropped (their standardisation is undefined).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(features, np.float64), np.asarray(labels)
    x = x[:, np.nanstd(x, axis=0) > 1e-9]
    if len(np.unique(y)) < 2 or len(y) < 2 * folds:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    if groups is None:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        predicted = cross_val_predict(model, x, y, cv=splitter)
    else:
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        predicted = cross_val_predict(model, x, y, cv=splitter, groups=np.asarray(groups))
    return float((predicted == y).mean())


def pose_agreement(ours: np.ndarray, teacher: np.ndarray) -> dict:
    """Per angle: mean |ours - teacher| (degrees) and the least-squares slope of ours on the
    teacher's (1.0: no compression), from (N, 3) yaw, pitch, roll."""
    a, b = np.asarray(ours, np.float64), np.asarray(teacher, np.float64)
    out = {"faces": len(a)}
    for j, angle in enumerate(ANGLES):
        if len(a) < 2:
            out[angle] = {"mad": float("nan"), "slope": float("nan")}
            continue
        variance = np.var(b[:, j])
        slope = np.cov(a[:, j], b[:, j], bias=True)[0, 1] / variance if variance > 0 else np.nan
        out[angle] = {"mad": float(np.abs(a[:, j] - b[:, j]).mean()), "slope": float(slope),
                      "teacher_std": float(np.sqrt(variance))}
    return out


def blendshape_stats(ours: np.ndarray, teacher: np.ndarray) -> dict:
    """Mean |diff| and mean per-shape Pearson correlation (shapes that vary in both)."""
    a, b = np.asarray(ours, np.float64), np.asarray(teacher, np.float64)
    if not len(a):
        return {"faces": 0, "mae": float("nan"), "mean_correlation": float("nan")}
    known = np.isfinite(b).all(axis=0)
    a, b = a[:, known], b[:, known]
    varying = (b.std(axis=0) > 0.02) & (a.std(axis=0) > 1e-6)
    correlations = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in np.flatnonzero(varying)]
    return {"faces": len(a), "mae": float(np.abs(a - b).mean()),
            "mean_correlation": float(np.mean(correlations)) if correlations else float("nan")}


# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------
def validation_entries(root, cache: dict, limit: int | None) -> dict[str, list]:
    from .datasets import build_index, split_of

    sets = sorted(set(LANDMARK_SETS) | set(POSE_SETS) | set(PROBE_SETS))
    out = {}
    for set_name in sets:
        entries = [e for e in build_index(set_name, root, cache) if split_of(e) == "val"]
        out[set_name] = entries[:limit] if limit else entries
    return out


def network_column(name: str, reconstructor, entries: dict[str, list]) -> Column:
    from ..core.arkit import to_arkit
    from ..core.camera import matrix_to_euler

    column = Column(name)
    for set_name, items in entries.items():
        for entry, face in largest_faces(reconstructor, items):
            if face is None:
                continue
            column.faces[(set_name, str(entry.path))] = FaceOutput(
                landmarks=face.landmarks, arkit=to_arkit(face.names, face.coefficients),
                features=np.asarray(face.coefficients, np.float64),
                euler=matrix_to_euler(face.rotation), emotion=face.emotion, presence=face.presence)
    return column


def teacher_column(entries: dict[str, list], cache: dict, root=None) -> Column:
    from ..core.camera import matrix_to_euler
    from .datasets import mediapipe_landmarks, set_folder, teacher_record, teacher_rotation

    column = Column("teacher")
    for set_name, items in entries.items():
        folder = set_folder(set_name, root)
        for entry in items:
            record = teacher_record(cache, entry, folder)
            points = mediapipe_landmarks(record)
            if points is None:
                continue
            rotation = teacher_rotation(record)
            scores = entry.blendshapes
            column.faces[(set_name, str(entry.path))] = FaceOutput(
                landmarks=points.astype(np.float64), arkit=scores,
                features=None if scores is None else scores[np.isfinite(scores)].astype(np.float64),
                euler=None if rotation is None else matrix_to_euler(rotation.astype(np.float64)))
    return column


def negative_presence(reconstructor, entries: dict[str, list], per_set: int = 300) -> np.ndarray | None:
    """Presence scores of cached no-face / half-face crops of validation faces, or None."""
    import torch

    from .crop_cache import CropCache, cache_root

    config = reconstructor.net.config
    if not config.presence_head:
        return None
    scores = []
    for set_name, items in entries.items():
        # the training caches cover every entry of a set: find the one built for all of them
        matches = sorted(cache_root().glob(f"{set_name}-*/meta.json"))
        for meta in matches:
            cache = CropCache.open(meta.parent)
            rows = [cache.index[str(e.path)] for e in items if str(e.path) in cache.index]
            patches = [cache.negatives[r, k] for r in rows[:per_set] for k in (0, 1)
                       if cache.has_negative[r, k]]
            if not patches:
                continue
            batch = torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).float().div_(255.0)
            size = config.input_size
            if batch.shape[-1] != size:
                batch = torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear")
            with torch.no_grad():
                for chunk in batch.split(64):
                    scores.append(reconstructor.network(chunk).presence.cpu().numpy())
            break
    return np.concatenate(scores) if scores else None


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------
def face_errors(column: Column, entries: list, set_name: str) -> tuple[list, list, dict]:
    """Per-face NME68, NME51 and NME per region of ``column`` on the human-labelled ``entries``, in
    their order; a face the column has no output for counts 1.0 everywhere."""
    from .metrics import nme_per_image, nme_regions

    e68, e51, regions = [], [], {name: [] for name in REGIONS}
    for entry in entries:
        if entry.landmark_source != "human":
            continue
        face = column.faces.get((set_name, str(entry.path)))
        if face is None:  # no face found: every error counts 1.0
            e68.append(1.0), e51.append(1.0)
            for values in regions.values():
                values.append(1.0)
            continue
        a, b = nme_per_image(face.landmarks, entry.landmarks)
        e68.append(float(a)), e51.append(float(b))
        for name, value in nme_regions(face.landmarks, entry.landmarks).items():
            regions[name].append(float(value))
    return e68, e51, regions


def set_errors(column: Column, entries: dict[str, list]) -> dict[str, tuple[list, list, dict]]:
    """:func:`face_errors` of ``column`` on every landmark set."""
    return {s: face_errors(column, entries[s], s) for s in LANDMARK_SETS}


def paired_nme(ours: np.ndarray, teacher: np.ndarray) -> dict:
    """Face by face against the teacher (the same faces, in the same order): the share of faces
    where ours is closer to the labels, and the median of ours - teacher. A mean can be decided by
    one face either side gets badly wrong (another person's face: NME > 1); these cannot."""
    ours, teacher = np.asarray(ours, np.float64), np.asarray(teacher, np.float64)
    if ours.shape != teacher.shape:
        raise ValueError(f"paired NME needs the same faces: {ours.shape} vs {teacher.shape}")
    if not len(ours):
        return {"faces": 0}
    return {"faces": len(ours), "closer": float((ours < teacher).mean()),
            "median_difference": float(np.median(ours - teacher))}


def paired_rows(errors: dict, teacher_errors: dict) -> dict:
    """:func:`paired_nme` per landmark set, from :func:`set_errors` of a network and the teacher."""
    return {s: paired_nme(errors[s][0], teacher_errors[s][0]) for s in LANDMARK_SETS}


def auc_row(column: Column, entries: list, set_name: str, labels: tuple[str, str],
            names: tuple[str, ...]) -> dict:
    from ..core.arkit import ARKIT_NAMES

    index = [ARKIT_NAMES.index(n) for n in names]
    scores: dict[str, list[float]] = {labels[0]: [], labels[1]: []}
    for entry in entries:
        label = entry.labels.get("emotion")
        face = column.faces.get((set_name, str(entry.path)))
        if label in scores and face is not None and face.arkit is not None:
            scores[label].append(float(np.nansum(face.arkit[index])))
    pos, neg = np.array(scores[labels[0]]), np.array(scores[labels[1]])
    value = auc(pos, neg) if len(pos) and len(neg) else float("nan")
    return {"auc": value, "n": int(len(pos) + len(neg))}


def probe_row(column: Column, entries: list, set_name: str, folds: int = 5) -> dict:
    from .datasets import subject_of

    x, y, groups, head_hits = [], [], [], []
    for entry in entries:
        label = emotion_index(entry.labels.get("emotion"))
        face = column.faces.get((set_name, str(entry.path)))
        if label < 0 or face is None or face.features is None:
            continue
        x.append(face.features), y.append(label)
        groups.append(subject_of(set_name, entry.path))
        if face.emotion is not None:
            head_hits.append(int(np.argmax(face.emotion)) == label)
    if not x:
        return {"probe": float("nan"), "n": 0, "head": float("nan")}
    has_subjects = set_name in ("lfw_gray", "ytf_train", "helen_train")
    accuracy = probe_accuracy(np.array(x), np.array(y), np.array(groups) if has_subjects else None,
                              folds)
    return {"probe": accuracy, "n": len(y), "grouped": has_subjects,
            "head": float(np.mean(head_hits)) if head_hits else float("nan")}


def pose_row(column: Column, teacher: Column) -> dict:
    ours, theirs = [], []
    for key, face in column.faces.items():
        other = teacher.faces.get(key)
        if key[0] in POSE_SETS and other is not None and other.euler is not None:
            ours.append(face.euler), theirs.append(other.euler)
    return pose_agreement(np.array(ours).reshape(-1, 3), np.array(theirs).reshape(-1, 3))


def blendshape_row(column: Column, teacher: Column, set_name: str) -> dict:
    ours, theirs = [], []
    for key, face in column.faces.items():
        other = teacher.faces.get(key)
        if key[0] == set_name and other is not None and other.arkit is not None:
            ours.append(face.arkit), theirs.append(other.arkit)
    return blendshape_stats(np.array(ours).reshape(-1, 52), np.array(theirs).reshape(-1, 52))


def presence_row(column: Column) -> dict:
    faces = [f.presence for f in column.faces.values() if f.presence is not None]
    if not faces or column.negatives is None or not len(column.negatives):
        return {"auc": float("nan"), "n": 0}
    return {"auc": auc(np.array(faces), column.negatives), "n": len(faces) + len(column.negatives),
            "mean_face": float(np.mean(faces)), "mean_negative": float(np.mean(column.negatives))}


def column_rows(column: Column, teacher: Column, entries: dict[str, list],
                teacher_errors: dict) -> dict:
    """One column's rows; ``teacher_errors`` (:func:`set_errors` of the teacher, computed once for
    all columns) gives a network column's paired rows."""
    errors = teacher_errors if column is teacher else set_errors(column, entries)
    rows = {"landmarks": {s: nme_summary(*errors[s]) for s in LANDMARK_SETS},
            "smile_auc_lfw": auc_row(column, entries["lfw_gray"], "lfw_gray", ("happiness", "neutral"),
                                     ("mouthSmileLeft", "mouthSmileRight")),
            "jaw_auc_fer": auc_row(column, entries["fer2013_train"], "fer2013_train",
                                   ("surprise", "neutral"), ("jawOpen",)),
            "jaw_auc_lfw": auc_row(column, entries["lfw_gray"], "lfw_gray", ("surprise", "neutral"),
                                   ("jawOpen",)),
            "probe": {s: probe_row(column, entries[s], s) for s in PROBE_SETS}}
    if column is not teacher:
        rows["paired"] = paired_rows(errors, teacher_errors)
        rows["pose"] = pose_row(column, teacher)
        rows["blendshapes"] = {s: blendshape_row(column, teacher, s) for s in ("helen_train", "lfw_gray")}
        rows["presence"] = presence_row(column)
    return rows


def compare(weights: list, root=None, teacher_cache=None, limit: int | None = None,
            device: str = "auto", backend: str = "auto") -> dict:
    """The side-by-side table (a dict: column name -> rows) for ``weights`` and the teacher."""
    from ..core.reconstruct import Reconstructor
    from .datasets import load_teacher_cache

    cache = load_teacher_cache(Path(teacher_cache).expanduser())
    entries = validation_entries(root, cache, limit)
    teacher = teacher_column(entries, cache, root)
    teacher_errors = set_errors(teacher, entries)
    table = {}
    for path in weights:
        reconstructor = Reconstructor(weights=path, device=device, max_faces=1, backend=backend)
        name = Path(path).name if path else "shipped"
        column = network_column(name, reconstructor, entries)
        column.negatives = negative_presence(reconstructor, entries)
        table[name if name not in table else f"{name} ({len(table)})"] = column_rows(
            column, teacher, entries, teacher_errors)
    table["teacher"] = column_rows(teacher, teacher, entries, teacher_errors)
    return table


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------
def _get(rows: dict, path: tuple) -> object:
    for key in path:
        if not isinstance(rows, dict) or key not in rows:
            return None
        rows = rows[key]
    return rows


def table_rows() -> list[tuple[str, tuple, str]]:
    """(label, path into a column's rows, format) of every printed row."""
    rows = []
    for s in LANDMARK_SETS:
        for metric in ("nme68", "nme51", "nme68_median", "failure_rate"):
            rows.append((f"{s} {metric.replace('_', ' ')}", ("landmarks", s, metric), ".4f"))
        for region in REGIONS:
            rows.append((f"  {s} nme {region}", ("landmarks", s, f"nme_{region}"), ".4f"))
        rows.append((f"  {s}: share of faces closer than the teacher (NME68)",
                     ("paired", s, "closer"), ".3f"))
        rows.append((f"  {s}: median per-face NME68, ours - teacher", ("paired", s,
                                                                          "median_difference"), "+.4f"))
    rows += [("smile AUC (lfw, happiness vs neutral)", ("smile_auc_lfw", "auc"), ".3f"),
             ("jawOpen AUC (fer, surprise vs neutral)", ("jaw_auc_fer", "auc"), ".3f"),
             ("jawOpen AUC (lfw, surprise vs neutral)", ("jaw_auc_lfw", "auc"), ".3f")]
    for s in PROBE_SETS:
        rows.append((f"7-emotion probe, {s}", ("probe", s, "probe"), ".3f"))
        rows.append((f"  faces in the probe, {s}", ("probe", s, "n"), "d"))
    for s in PROBE_SETS:
        rows.append((f"emotion head accuracy, {s}", ("probe", s, "head"), ".3f"))
    for angle in ANGLES:
        rows.append((f"{angle}: mean abs(ours - teacher), deg", ("pose", angle, "mad"), ".2f"))
        rows.append((f"{angle}: slope ours vs teacher", ("pose", angle, "slope"), ".3f"))
    rows.append(("  faces in the pose rows", ("pose", "faces"), "d"))
    for s in ("helen_train", "lfw_gray"):
        rows.append((f"blendshapes {s}: mean abs(ours - teacher)", ("blendshapes", s, "mae"), ".4f"))
        rows.append((f"blendshapes {s}: mean correlation", ("blendshapes", s, "mean_correlation"),
                     ".3f"))
    rows.append(("presence AUC (faces vs no / half face)", ("presence", "auc"), ".3f"))
    return rows


def format_comparison(table: dict) -> str:
    """A Markdown table: one row per metric, one column per network and the teacher."""
    names = list(table)
    lines = ["| what | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, path, fmt in table_rows():
        cells = []
        for name in names:
            value = _get(table[name], path)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                cells.append("-")
            else:
                cells.append(format(int(value) if fmt == "d" else float(value), fmt))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
