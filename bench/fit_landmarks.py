"""Re-choose the feature landmarks' mesh vertices (iBUG 17-67), or the jaw curves' anchors,
against human labels.

On helen_train, crops framed on the human labels (as bench/landmark_floor.py), the network's meshes
of the training split give, for every mesh vertex near a feature landmark's, its mean distance to
that landmark's label; training.landmark_fit.select_vertices picks the nearest on average (mirror
pairs together, midline points on the midline). The validation subjects are only measured.

    .venv/bin/python bench/fit_landmarks.py [--weights W] [--radius 0.05] [--write]

Prints, per split: NME68 / NME51 and per-region NME with ICT's feature vertices and with the
fitted ones, on the same network outputs; the mean offset from the label of the landmarks most
off (an offset the same on every face, training faces included, is the definition's, not the
network's) and its share of the squared error; the landmarks that moved and how far. ``--write``
stores the table in face_expr_ros/core/feature_landmarks.py (the jaw stays dynamic).

    .venv/bin/python bench/fit_landmarks.py --jaw [--jaw-radius 0.1] [--outline-tolerance 1.5]
        [--write]

fits the anchors (static vertices) the 17 jaw contour curves are sliced through instead: for each
vertex near a jaw landmark's, the curve through it is built (core.contour.jaw_curve) and its
dynamic landmark compared with the labels; mirror pairs are chosen together, the middle of the
chin stays on the midline, and an anchor whose cheek curve misses the outline of the turned
neutral face (training.landmark_fit.OUTLINE_POSES) by more than the tolerance is left out. Prints
the same NME table, every jaw landmark's mean offset both ways, what moved, and the far-side
outline distances per pose; ``--write`` stores JAW_ANCHOR_VERTICES.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face_expr_ros.core import feature_landmarks  # noqa: E402
from face_expr_ros.core.contour import build_contour_curves, jaw_landmarks_np  # noqa: E402
from face_expr_ros.core.facemodel import N_JAW  # noqa: E402
from face_expr_ros.core.reconstruct import Reconstructor  # noqa: E402
from face_expr_ros.training.datasets import build_index, split_of  # noqa: E402
from face_expr_ros.training.landmark_fit import (OUTLINE_POSES,  # noqa: E402
                                                  SILHOUETTE_PX, candidate_errors,
                                                  candidate_vertices, face_width_cm,
                                                  jaw_candidate_errors, jaw_outline_distances,
                                                  outline_distance, posed_for_outline,
                                                  projected_jaw, projected_vertices,
                                                  select_vertices, silhouette_outline)
from face_expr_ros.training.metrics import (REGIONS, interocular_np, nme_per_image,  # noqa: E402
                                             nme_regions)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from landmark_floor import crop_and_labels  # noqa: E402


def network_outputs(rec: Reconstructor, entries: list) -> tuple[dict, np.ndarray, np.ndarray]:
    """The network's parameters (numpy, per face stacked), its 68 landmarks and the labels, in
    crop pixels of crops framed on the labels."""
    params, landmarks, labels = [], [], []
    for entry in entries:
        pixels, target = crop_and_labels(rec, entry)
        with torch.no_grad():
            p = rec.net(pixels)
            landmarks.append(rec.projector(p, rec.input_size)[0].numpy())
        params.append({k: getattr(p, k)[0].numpy() for k in
                       ("identity", "expression", "rotation", "translation", "scale")})
        labels.append(target)
    stacked = {k: np.stack([p[k] for p in params]) for k in params[0]}
    return stacked, np.array(landmarks, np.float64), np.array(labels, np.float64)


def with_vertices(rec: Reconstructor, params: dict, landmarks: np.ndarray,
                  vertices: np.ndarray) -> np.ndarray:
    """The network's landmarks with feature landmarks 17-67 on ``vertices[17:]``."""
    out = landmarks.copy()
    out[:, N_JAW:] = projected_vertices(rec.model, **params, vertex_ids=vertices[N_JAW:],
                                        input_size=rec.input_size)
    return out


def row(name: str, predicted: np.ndarray, labels: np.ndarray) -> str:
    nme68, nme51 = nme_per_image(predicted, labels)
    regions = nme_regions(predicted, labels)
    return (f"| {name} | {len(labels)} | {nme68.mean():.4f} | {nme51.mean():.4f} | "
            + " | ".join(f"{regions[r].mean():.4f}" for r in REGIONS) + " |")


def offsets(predicted: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """(68, 2) mean offset of each landmark from its label (share of the inter-ocular distance,
    x right, y down) and that offset's share of the mean squared error."""
    scale = interocular_np(labels)[:, None, None]
    error = (predicted - labels) / scale
    mean = error.mean(axis=0)
    return mean, float((mean ** 2).sum(-1).mean() / (error ** 2).sum(-1).mean())


def offset_rows(splits: dict, rec: Reconstructor, own: np.ndarray, fitted: np.ndarray,
                count: int = 10) -> list[str]:
    """The ``count`` feature landmarks with the largest mean offset on the training split with
    ICT's vertices: their offsets (percent of the inter-ocular distance) per split, both ways."""
    table = {}
    for split, (p, lm, lab) in splits.items():
        for name, vertices in (("ICT's", own), ("fitted", fitted)):
            table[split, name] = offsets(with_vertices(rec, p, lm, vertices), lab)
    size = np.linalg.norm(table["train", "ICT's"][0], axis=1)
    worst = N_JAW + np.argsort(-size[N_JAW:])[:count]
    rows = ["| " + " | ".join(f"{split}, {name}" for split, name in table) + " | landmark |",
            "|---" * (len(table) + 1) + "|",
            "| " + " | ".join(f"{share:.2f}" for _, share in table.values())
            + " | all: the offsets' share of the squared error |"]
    for k in worst:
        rows.append("| " + " | ".join(f"({100 * m[k, 0]:+.1f}, {100 * m[k, 1]:+.1f})"
                                      for m, _ in table.values()) + f" | {k} |")
    return rows


def write_pairs(name: str, own: np.ndarray, fitted: np.ndarray) -> None:
    """Store ``((own, fitted), ...)`` as the non-empty table ``name`` of core/feature_landmarks.py
    (written to a temporary file, then renamed)."""
    path = Path(feature_landmarks.__file__)
    text = path.read_text()
    start = text.index(f"{name}: tuple")
    end = text.index("\n)", text.index("= (", start)) + 2
    pairs = [f"({int(a)}, {int(b)})" for a, b in zip(own, fitted)]
    lines = ["    " + ", ".join(pairs[i:i + 6]) + "," for i in range(0, len(pairs), 6)]
    text = (text[:start] + f"{name}: tuple[tuple[int, int], ...] = (\n"
            + "\n".join(lines) + "\n)" + text[end:])
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    print(f"wrote {name} into {path}")


def fit_jaw(rec: Reconstructor, splits: dict, args: argparse.Namespace, started: float) -> int:
    """The jaw contour curves' anchors: fit on the training split, both splits measured."""
    model = rec.model
    own = np.asarray(model.landmarks68, np.int64)
    scale = float(np.linalg.norm(model.neutral[own[36]] - model.neutral[own[45]]))
    radius = args.jaw_radius * scale
    area = np.arange(model.face_area_vertex_count)
    projected = {s: projected_vertices(model, **p, vertex_ids=area, input_size=rec.input_size)
                 .astype(np.float32) for s, (p, _, _) in splits.items()}
    candidates = candidate_vertices(model.neutral, own, radius, landmarks=range(N_JAW),
                                    limit=model.face_area_vertex_count)
    errors = jaw_candidate_errors(model, projected["train"], splits["train"][2], candidates,
                                  own[:N_JAW], radius)
    outline = jaw_outline_distances(model, candidates, own[:N_JAW], radius)
    missed = np.isfinite(outline) & (outline > args.outline_tolerance)
    errors[missed] = np.inf  # the curve must still reach the outline of a turned face
    fitted = select_vertices(errors, candidates, own, model.neutral, radius,
                             midline=1e-4 * scale, keep=(), landmarks=range(N_JAW))[:N_JAW]
    print(f"bench/fit_landmarks.py --jaw: helen_train, crops framed on the labels; weights "
          f"{args.weights or 'package'}; radius {args.jaw_radius:.3f} of the inter-ocular "
          f"distance ({len(candidates)} candidate anchors; {int(missed.sum())} pairs (landmark, "
          f"anchor) left out, their curve misses the outline of a turned face by more than "
          f"{args.outline_tolerance} % of the face width); load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| split, jaw anchors | faces | NME68 | NME51 | "
          + " | ".join(f"NME {r}" for r in REGIONS) + " |\n|---|" + "---|" * (3 + len(REGIONS)))
    tables = {}
    for name, anchors in (("ICT's", own[:N_JAW]), ("fitted", fitted)):
        curves = build_contour_curves(model, anchor_vertex_ids=anchors)
        for split, (_, lm, lab) in splits.items():
            ours = lm.copy()
            ours[:, :N_JAW] = projected_jaw(curves, projected[split])
            tables[split, name] = offsets(ours, lab)[0]
            print(row(f"{split}, {name}", ours, lab))
    print("\nMean jaw offsets from the labels (percent of the inter-ocular distance, x right, "
          "y down):\n| landmark | " + " | ".join(f"{s}, {n}" for s, n in tables) + " |\n"
          + "|---" * (len(tables) + 1) + "|")
    for k in range(N_JAW):
        print(f"| {k} | " + " | ".join(f"({100 * m[k, 0]:+.1f}, {100 * m[k, 1]:+.1f})"
                                       for m in tables.values()) + " |")
    moved = np.linalg.norm(model.neutral[fitted] - model.neutral[own[:N_JAW]], axis=1) / scale
    dy = (model.neutral[fitted, 1] - model.neutral[own[:N_JAW], 1]) / scale
    print("\nmoved (jaw landmark: share of the inter-ocular distance, of it in y): "
          + ", ".join(f"{k}: {moved[k]:.3f} ({dy[k]:+.3f})" for k in range(N_JAW) if moved[k] > 0))
    print("\nDistance of the far-side cheek landmarks from the turned neutral face's outline (% of "
          "the face width), curves through ICT's / the fitted anchors (test_core_contour asserts "
          "< 2):")
    print("\n".join(outline_rows(model, own[:N_JAW], fitted)))
    if args.write:
        write_pairs("JAW_ANCHOR_VERTICES", own[:N_JAW], fitted)
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


def outline_rows(model, own: np.ndarray, fitted: np.ndarray) -> list[str]:
    """Per pose of OUTLINE_POSES, each far-side cheek landmark's distance from the outline."""
    curves = [build_contour_curves(model, anchor_vertex_ids=a) for a in (own, fitted)]
    width_px = face_width_cm(model) * SILHOUETTE_PX / 30.0
    rows = ["| yaw | pitch | " + " | ".join(f"{10 + i} or {6 - i}" for i in range(7)) + " |",
            "|---|---|" + "---|" * 7]
    for yaw, pitch in OUTLINE_POSES:
        points = posed_for_outline(model, yaw, pitch)
        outline = silhouette_outline(model, points)
        far = list(range(10, 17)) if yaw > 0 else list(range(6, -1, -1))
        cells = [outline_distance(outline, jaw_landmarks_np(points, c)[0][far], width_px)
                 for c in curves]
        rows.append(f"| {yaw} | {pitch} | " + " | ".join(
            f"{a:.1f} / {b:.1f}" for a, b in zip(*cells)) + " |")
    return rows



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="default: the package's")
    parser.add_argument("--radius", type=float, default=0.05,
                        help="how far a vertex may move, as a share of the neutral mesh's outer "
                             "inter-ocular distance (default 0.05)")
    parser.add_argument("--write", action="store_true",
                        help="store the fitted vertices in core/feature_landmarks.py")
    parser.add_argument("--jaw", action="store_true",
                        help="fit the jaw contour curves' anchors (their static vertices) instead "
                             "of the feature vertices (--write stores them)")
    parser.add_argument("--jaw-radius", type=float, default=0.1,
                        help="with --jaw: how far an anchor may move, as a share of the "
                             "inter-ocular distance (default 0.1)")
    parser.add_argument("--outline-tolerance", type=float, default=1.5,
                        help="with --jaw: an anchor's cheek curve must give a point within this "
                             "distance of the turned neutral face's outline, %% of the face width "
                             "(default 1.5; test_core_contour asserts 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    rec = Reconstructor(weights=args.weights, device="cpu", backend="torch", max_faces=1)
    model = rec.model
    own = np.asarray(model.landmarks68, np.int64)
    if not np.array_equal(feature_landmarks.feature_landmark_vertices(model), own):
        print("note: the package already uses fitted vertices; this fit starts again from ICT's")
    scale = float(np.linalg.norm(model.neutral[own[36]] - model.neutral[own[45]]))
    radius = args.radius * scale
    candidates = candidate_vertices(model.neutral, own, radius)
    labelled = [e for e in build_index("helen_train")
                if e.landmarks is not None and e.landmark_source == "human"]
    splits = {s: network_outputs(rec, [e for e in labelled if split_of(e) == s])
              for s in ("train", "val")}
    if args.jaw:
        return fit_jaw(rec, splits, args, started)
    params, landmarks, labels = splits["train"]
    projected = projected_vertices(model, **params, vertex_ids=candidates,
                                   input_size=rec.input_size)
    fitted = select_vertices(candidate_errors(projected, labels), candidates, own,
                             model.neutral, radius, midline=0.02 * scale)
    print(f"bench/fit_landmarks.py: helen_train, crops framed on the labels; weights "
          f"{args.weights or 'package'}; radius {args.radius:.3f} of the inter-ocular distance "
          f"({len(candidates)} candidate vertices); load average {os.getloadavg()[0]:.1f}\n")
    print("| split, feature vertices | faces | NME68 | NME51 | "
          + " | ".join(f"NME {r}" for r in REGIONS) + " |\n|---|" + "---|" * (3 + len(REGIONS)))
    for split, (p, lm, lab) in splits.items():
        print(row(f"{split}, ICT's", with_vertices(rec, p, lm, own), lab))
        print(row(f"{split}, fitted", with_vertices(rec, p, lm, fitted), lab))
    print("\nMean offset from the label (percent of the inter-ocular distance, x right, y down) of "
          "the landmarks most off on the training split with ICT's vertices:")
    print("\n".join(offset_rows(splits, rec, own, fitted)))
    moved = np.linalg.norm(model.neutral[fitted] - model.neutral[own], axis=1) / scale
    print("\nmoved (iBUG index: share of the inter-ocular distance): "
          + ", ".join(f"{k}: {moved[k]:.3f}" for k in range(N_JAW, 68) if moved[k] > 0))
    if args.write:
        write_pairs("FEATURE_VERTICES", own[N_JAW:], fitted[N_JAW:])
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
