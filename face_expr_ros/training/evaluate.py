"""`face_expr eval`: landmark accuracy and expression sanity of trained weights, on held-out subjects.

Everything runs through the inference path (core.reconstruct.Reconstructor): detector box ->
crop -> network -> landmarks in image pixels. Images where the detector finds no face are failures
(NME counted as 1.0) unless they are thumbnails (<= 64 px, FER2013), which are face crops: then
the whole image is the detector box.

- NME: mean point error / outer inter-ocular distance (iBUG 36-45), on all 68 and on the 51 inner
  points, over the validation split (``datasets.split_of``) of the sets with human landmarks;
  failure rate = share with NME68 > 0.10.
- Expression sanity: ROC AUC of mouthSmile_L + mouthSmile_R for 'happiness' vs 'neutral' on
  lfw_gray, and of jawOpen for 'surprise' vs 'neutral' on fer2013_train (validation split).
- With a teacher cache that has blendshape scores (``--teacher-cache``): agreement of the ARKit
  view of the coefficients with the teacher's 51 scores on the validation split of helen_train and
  lfw_gray: mean absolute difference, and the mean over shapes of the Pearson correlation across
  faces (shapes that vary in the teacher's scores).
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cli_types import add_model_options, positive_int

log = logging.getLogger(__name__)
THUMBNAIL_SIDE = 64
FAILURE_NME = 0.10


@dataclass
class EvalResult:
    nme: dict = field(default_factory=dict)
    expression: dict = field(default_factory=dict)
    blendshapes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"nme": self.nme, "expression": self.expression, "blendshapes": self.blendshapes}


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties count half (Mann-Whitney U)."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auc needs at least one positive and one negative score")
    ranks = rankdata(np.concatenate((pos, neg)))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def faces_of(reconstructor, image: np.ndarray):
    """The largest face through the inference path; thumbnails fall back to the whole image."""
    from ..core.detect import Detection

    detections = reconstructor.detect(image)
    if not detections and min(image.shape[:2]) <= THUMBNAIL_SIDE:
        h, w = image.shape[:2]
        # a face crop: the detector box a face filling the thumbnail would get (core.align rule)
        detections = [Detection(np.array([0.0, -0.15 * h, w - 1.0, h - 1.0]), 0.0)]
    return reconstructor.reconstruct_boxes(image, detections[:1])


def largest_faces(reconstructor, entries, limit: int | None = None):
    """(entry, largest face or None when none is found) for each readable image among the first
    ``limit`` entries; unreadable images are logged and left out."""
    from .datasets import load_image_rgb

    for entry in entries[:limit] if limit else entries:
        try:
            image = load_image_rgb(entry.path)
        except OSError as err:
            log.warning("skipped %s", err)
            continue
        faces = faces_of(reconstructor, image)
        yield entry, faces[0] if faces else None


def evaluate_landmarks(reconstructor, sets: list[str], root=None, limit: int | None = None) -> dict:
    """NME per set on its human-labelled validation split; an image with no face found counts as
    NME 1.0, an unreadable image is left out."""
    from .datasets import build_index, split_of
    from .metrics import nme_per_image

    out = {}
    for set_name in sets:
        entries = [e for e in build_index(set_name, root)
                   if e.landmarks is not None and e.landmark_source == "human" and split_of(e) == "val"]
        n68, n51 = [], []
        for entry, face in largest_faces(reconstructor, entries, limit):
            if face is None:
                n68.append(1.0), n51.append(1.0)
                continue
            a, b = (float(v) for v in nme_per_image(face.landmarks, entry.landmarks))
            n68.append(a), n51.append(b)
        n68, n51 = np.array(n68), np.array(n51)
        out[set_name] = {"faces": int(len(n68)), "nme68": float(np.mean(n68)),
                         "nme51": float(np.mean(n51)), "nme68_median": float(np.median(n68)),
                         "failure_rate": float(np.mean(n68 > FAILURE_NME))}
    return out


def expression_scores(reconstructor, set_name: str, labels: tuple[str, str], names: tuple[str, ...],
                      root=None, limit: int | None = None) -> dict:
    """AUC of sum(coefficients[names]) for labels[0] (positive) vs labels[1] (negative)."""
    from .datasets import build_index, split_of

    index = [reconstructor.model.expression_index(n) for n in names]
    scores: dict[str, list[float]] = {labels[0]: [], labels[1]: []}
    for label in labels:
        entries = [e for e in build_index(set_name, root)
                   if e.labels.get("emotion") == label and split_of(e) == "val"]
        for _, face in largest_faces(reconstructor, entries, limit):
            if face is not None:
                scores[label].append(float(face.coefficients[index].sum()))
    pos, neg = np.array(scores[labels[0]]), np.array(scores[labels[1]])
    return {"score": " + ".join(names), "positive": labels[0], "negative": labels[1],
            "n_positive": int(len(pos)), "n_negative": int(len(neg)),
            "auc": auc(pos, neg) if len(pos) and len(neg) else float("nan"),
            "mean_positive": float(pos.mean()) if len(pos) else float("nan"),
            "mean_negative": float(neg.mean()) if len(neg) else float("nan")}


def blendshape_agreement(reconstructor, set_name: str, teacher_cache: dict, root=None,
                         limit: int | None = None) -> dict:
    """Ours (ARKit view) against the teacher's blendshape scores on a set's validation split."""
    from ..core.arkit import to_arkit
    from .datasets import build_index, split_of

    entries = [e for e in build_index(set_name, root, teacher_cache)
               if e.blendshapes is not None and split_of(e) == "val"]
    ours, theirs = [], []
    for entry, face in largest_faces(reconstructor, entries, limit):
        if face is not None:
            ours.append(to_arkit(face.names, face.coefficients))
            theirs.append(entry.blendshapes)
    if not ours:
        return {"faces": 0, "mae": float("nan"), "mean_correlation": float("nan")}
    a, b = np.array(ours), np.array(theirs, np.float64)
    known = np.isfinite(b).all(axis=0)  # tongueOut: no teacher score
    a, b = a[:, known], b[:, known]
    varying = (b.std(axis=0) > 0.02) & (a.std(axis=0) > 1e-6)
    correlations = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in np.flatnonzero(varying)]
    return {"faces": len(a), "mae": float(np.abs(a - b).mean()),
            "mean_correlation": float(np.mean(correlations)) if correlations else float("nan"),
            "shapes_correlated": len(correlations)}


def evaluate(weights=None, root=None, limit: int | None = None, device: str = "auto",
             backend: str = "auto", teacher_cache=None) -> EvalResult:
    from ..core.reconstruct import Reconstructor

    reconstructor = Reconstructor(weights=weights, device=device, max_faces=1, backend=backend)
    result = EvalResult()
    result.nme = evaluate_landmarks(reconstructor, ["helen_train", "ytf_train"], root, limit)
    result.expression["lfw_smile"] = expression_scores(
        reconstructor, "lfw_gray", ("happiness", "neutral"), ("mouthSmile_L", "mouthSmile_R"), root, limit)
    result.expression["fer_surprise"] = expression_scores(
        reconstructor, "fer2013_train", ("surprise", "neutral"), ("jawOpen",), root, limit)
    if teacher_cache is not None:
        from .datasets import load_teacher_cache

        cache = load_teacher_cache(Path(teacher_cache).expanduser())
        result.blendshapes = {s: blendshape_agreement(reconstructor, s, cache, root, limit)
                              for s in ("helen_train", "lfw_gray")}
    return result


def add_eval_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", help="landmark NME and expression AUCs on held-out subjects",
                            description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="data root (default: $FACE_EXPR_DATA or ../shared/data)")
    p.add_argument("--limit", type=positive_int, help="at most N images per set and label (quick check)")
    add_model_options(p, face_model=False)
    p.add_argument("--teacher-cache", type=Path, default=None, metavar="DIR",
                   help="teacher cache (face_expr annotate): print the side-by-side table of the "
                        "network(s) and the teacher's own outputs on the same faces "
                        "(training/compare.py) instead")
    p.add_argument("--compare", type=Path, action="append", default=[], metavar="FILE",
                   help="more weights, one column each beside --weights (with --teacher-cache)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from ..cli_types import UsageError

    if args.compare and args.teacher_cache is None:
        raise UsageError("--compare needs --teacher-cache (the side-by-side table)")
    if args.teacher_cache is not None:
        from .compare import compare, format_comparison

        result = compare([args.weights, *args.compare], args.data, args.teacher_cache, args.limit,
                         args.device, args.backend)
        print(format_comparison(result))
        if args.json:
            from ..core.export import write_bytes_atomic

            write_bytes_atomic(args.json, json.dumps(result, indent=2).encode())
        return 0
    result = evaluate(args.weights, args.data, args.limit, args.device, args.backend,
                      args.teacher_cache).to_dict()
    print(format_table(result))
    if args.json:
        from ..core.export import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps(result, indent=2).encode())
    return 0


def format_table(result: dict) -> str:
    lines = ["set          faces  NME68   NME51   NME68 median  failure (>0.10)"]
    for name, r in result["nme"].items():
        lines.append(f"{name:<12} {r['faces']:>5}  {r['nme68']:.4f}  {r['nme51']:.4f}  "
                     f"{r['nme68_median']:.4f}        {r['failure_rate']:.3f}")
    lines.append("")
    lines.append("expression check                         n+/n-      AUC    mean+  mean-")
    for key, r in result["expression"].items():
        label = f"{r['score']} ({r['positive']} vs {r['negative']})"
        lines.append(f"{label:<40} {r['n_positive']}/{r['n_negative']:<6}  {r['auc']:.3f}  "
                     f"{r['mean_positive']:.3f}  {r['mean_negative']:.3f}")
    if result.get("blendshapes"):
        lines += ["", "agreement with the teacher's blendshapes   faces  mean |diff|  mean corr"]
        for name, r in result["blendshapes"].items():
            lines.append(f"{name:<42} {r['faces']:>5}  {r['mae']:.4f}       {r['mean_correlation']:.3f}")
    return "\n".join(lines)
