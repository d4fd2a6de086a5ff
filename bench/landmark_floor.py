"""Where the landmark error is: the face model's own floor against the network's error.

On helen_train's human labels (crops framed on the labels, so the detector plays no part):

- ``network, validation``: the network's NME on the validation subjects;
- ``network, training split``: the same on training-split faces (an over-fitting network would be
  far better here than on validation);
- ``face model fit``: identity (the network's K modes), expression (in [0, 1]) and pose optimised
  per validation face (Adam, starting from the network's answer) to the human labels through the
  same projection and dynamic contour (core.projection): what the face model can represent.

    .venv/bin/python bench/landmark_floor.py [--weights W] [--iterations 300] [--limit N]
        [--teacher-cache ~/.cache/face_expr_ros/teacher_v3]   # adds the teacher's row

With a teacher cache (face_expr annotate) a row gives MediaPipe Face Landmarker's own landmarks
(its 478 points mapped to 68) on the validation faces it found, in the same crop pixels, and a
third table compares the mouth's ARKit scores with the teacher's (:func:`shape_rows`): ours and
the fit's, whose expression only the labels decide.

Prints two tables: NME68 and NME51 (mean point error / outer inter-ocular distance), then per
region (training.metrics.REGIONS) with the mouth's shape: its width (corners 48-54) and inner
opening (62-66) as a ratio of the labels' on average, and their correlation with the labels'
across faces (1.0: the mouth follows the face's own). A third table takes the faces with a
wide-open mouth apart (labelled inner opening above ``--open-mouth`` inter-ocular distances):
their NME68 against the others' and how much of the opening is read on them.
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

from face_expr_ros.core.align import (apply_affine, crop_from_landmarks,  # noqa: E402
                                      landmark_crop_affine)
from face_expr_ros.core.arkit import ARKIT_NAMES, to_arkit  # noqa: E402
from face_expr_ros.core.network import FaceParams  # noqa: E402
from face_expr_ros.core.reconstruct import Reconstructor  # noqa: E402
from face_expr_ros.training.datasets import (build_index, load_image_rgb,  # noqa: E402
                                              load_teacher_cache, mediapipe_landmarks,
                                              set_folder, split_of, teacher_blendshapes,
                                              teacher_record)
from face_expr_ros.training.metrics import (REGIONS, interocular_np, nme_per_image,  # noqa: E402
                                             nme_regions)


def skew(w: torch.Tensor) -> torch.Tensor:
    """(B, 3) -> (B, 3, 3) cross-product matrices."""
    z = torch.zeros_like(w[:, 0])
    return torch.stack([torch.stack([z, -w[:, 2], w[:, 1]], -1),
                        torch.stack([w[:, 2], z, -w[:, 0]], -1),
                        torch.stack([-w[:, 1], w[:, 0], z], -1)], -2)


def crop_and_labels(rec: Reconstructor, entry) -> tuple[torch.Tensor, np.ndarray]:
    image = load_image_rgb(entry.path)
    crop = crop_from_landmarks(image, entry.landmarks, rec.input_size, rec.net.config.crop_margin)
    pixels = torch.from_numpy(crop.image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    return pixels, apply_affine(crop.image_to_crop, entry.landmarks)


def fit(rec: Reconstructor, params: FaceParams, target: np.ndarray,
        iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """The face model's landmarks (68, 2) optimised to ``target`` (68, 2) crop pixels, and the
    fitted expression coefficients (E,)."""
    goal = torch.tensor(target, dtype=torch.float32)[None]
    identity = params.identity.clone().requires_grad_()
    logits = torch.logit(params.expression.clamp(1e-3, 1 - 1e-3)).clone().requires_grad_()
    turn = torch.zeros(1, 3, requires_grad=True)
    shift = params.translation[:, :2].clone().requires_grad_()
    log_scale = torch.log(params.scale).clone().requires_grad_()
    optimiser = torch.optim.Adam([identity, logits, turn, shift, log_scale], lr=0.02)
    for _ in range(iterations):
        rotation = params.rotation @ torch.linalg.matrix_exp(skew(turn))
        translation = torch.cat([shift, torch.zeros(1, 1)], 1)
        landmarks = rec.projector(FaceParams(identity, torch.sigmoid(logits), rotation, translation,
                                             torch.exp(log_scale)), rec.input_size)
        loss = ((landmarks - goal) ** 2).sum(-1).mean() + 1e-3 * (identity ** 2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return landmarks[0].detach().numpy(), torch.sigmoid(logits)[0].detach().numpy()


TEACHER_ROW = "teacher (MediaPipe), validation faces it found"
MOUTH_SHAPES = ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
                "mouthUpperUpRight", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
                "mouthStretchRight", "mouthFunnel", "mouthPucker", "mouthClose")
"""The ARKit shapes that open, widen and shape the mouth: the shape table's rows."""


def teacher_in_crop(rec: Reconstructor, entry, record: dict | None) -> np.ndarray | None:
    """The teacher's 68 landmarks of ``entry`` (its teacher ``record``) in the crop framed on its
    labels (None: none)."""
    points = mediapipe_landmarks(record)
    if points is None:
        return None
    crop = landmark_crop_affine(entry.landmarks, rec.input_size, rec.net.config.crop_margin)
    return apply_affine(crop, points)


def shape_rows(scores: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[str]:
    """Per mouth shape: mean of ours, the fit's and the teacher's ARKit scores, and the slope and
    correlation of ours and of the fit's against the teacher's across faces (a slope below 1:
    the scores move less than the teacher's from face to face)."""
    ours, fitted, teacher = (np.array(x, np.float64) for x in zip(*scores))
    rows = []
    for name in MOUTH_SHAPES:
        k = ARKIT_NAMES.index(name)
        ok = np.isfinite(teacher[:, k])
        t = teacher[ok, k]
        cells = [f"{ours[ok, k].mean():.3f} / {fitted[ok, k].mean():.3f} / {t.mean():.3f}"]
        for y in (ours[ok, k], fitted[ok, k]):
            slope = np.polyfit(t, y, 1)[0]
            cells.append(f"{slope:.2f} / {np.corrcoef(y, t)[0, 1]:.2f}")
        rows.append(f"| {name} | {int(ok.sum())} | " + " | ".join(cells) + " |")
    return rows


def stacked(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 68, 2) predictions and (N, 68, 2) labels of (predicted, labels) pairs."""
    return (np.array([p for p, _ in items], np.float64),
            np.array([t for _, t in items], np.float64))


def span(points: np.ndarray, a: int, b: int) -> np.ndarray:
    """(N,) distance between points a and b of (N, 68, 2) landmarks."""
    return np.linalg.norm(points[:, a] - points[:, b], axis=-1)


def region_cells(items: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Per-region NME, then the mouth width and inner opening: mean ratio to the labels' (both
    over the inter-ocular distance) and the correlation across faces."""
    predicted, labels = stacked(items)
    regions = nme_regions(predicted, labels)
    cells = [f"{regions[name].mean():.4f}" for name in REGIONS]
    scale = interocular_np(labels)
    for a, b in ((48, 54), (62, 66)):
        ours, theirs = span(predicted, a, b) / scale, span(labels, a, b) / scale
        cells.append(f"{ours.mean() / theirs.mean():.2f} / {np.corrcoef(ours, theirs)[0, 1]:.2f}")
    return cells


def open_mouth_cells(items: list[tuple[np.ndarray, np.ndarray]], threshold: float) -> list[str]:
    """Faces whose labelled inner opening (62-66) exceeds ``threshold`` inter-ocular distances:
    their count, their NME68 and the other faces', the mean ratio of the predicted opening to the
    labelled one on them, and their share of the summed NME68."""
    predicted, labels = stacked(items)
    nme68, _ = nme_per_image(predicted, labels)
    scale = interocular_np(labels)
    labelled = span(labels, 62, 66) / scale
    wide = labelled > threshold
    if not wide.any():
        return [f"0 / {len(items)}", "-", f"{nme68.mean():.4f}", "-", "0.00"]
    ratio = (span(predicted, 62, 66)[wide] / scale[wide]).mean() / labelled[wide].mean()
    rest = f"{nme68[~wide].mean():.4f}" if (~wide).any() else "-"
    return [f"{int(wide.sum())} / {len(items)}", f"{nme68[wide].mean():.4f}", rest,
            f"{ratio:.2f}", f"{nme68[wide].sum() / nme68.sum():.2f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="default: the package's")
    parser.add_argument("--iterations", type=int, default=300, help="Adam steps per face")
    parser.add_argument("--limit", type=int, default=200, help="training-split faces measured")
    parser.add_argument("--open-mouth", type=float, default=0.25,
                        help="inner opening (62-66, inter-ocular distances) above which a face "
                             "counts as a wide-open mouth (default 0.25)")
    parser.add_argument("--teacher-cache", default=None,
                        help="folder of face_expr annotate's cache: adds the teacher's row")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    rec = Reconstructor(weights=args.weights, device="cpu", backend="torch", max_faces=1)
    cache = (load_teacher_cache(Path(args.teacher_cache).expanduser())
             if args.teacher_cache else None)
    labelled = [e for e in build_index("helen_train")
                if e.landmarks is not None and e.landmark_source == "human"]
    # (predicted, labels) crop pixels of every face, per row
    pairs: dict[str, list] = {"network, validation": [], "network, training split": [],
                              "face model fit, validation": []}
    if cache is not None:
        pairs[TEACHER_ROW] = []
    shapes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (ours, fit's, teacher's)
    folder, names = set_folder("helen_train"), rec.model.expression_names
    for split, name in (("val", "network, validation"), ("train", "network, training split")):
        entries = [e for e in labelled if split_of(e) == split]
        for entry in entries[: args.limit] if split == "train" else entries:
            pixels, target = crop_and_labels(rec, entry)
            with torch.no_grad():
                params = rec.net(pixels)
                landmarks = rec.projector(params, rec.input_size)[0].numpy()
            pairs[name].append((landmarks, target))
            if split == "val":
                fitted, coefficients = fit(rec, params, target, args.iterations)
                pairs["face model fit, validation"].append((fitted, target))
                record = None if cache is None else teacher_record(cache, entry, folder)
                teacher = teacher_in_crop(rec, entry, record)
                if teacher is not None:
                    pairs[TEACHER_ROW].append((teacher, target))
                scores = teacher_blendshapes(record)
                if scores is not None:
                    shapes.append((to_arkit(names, params.expression[0].numpy()),
                                   to_arkit(names, coefficients), scores))
    print(f"bench/landmark_floor.py: helen_train human labels, crops framed on them; weights "
          f"{args.weights or 'package'}; {args.iterations} Adam steps per fit; load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| what | faces | NME68 | NME51 |\n|---|---|---|---|")
    for name, items in pairs.items():
        nme68, nme51 = nme_per_image(*stacked(items))
        print(f"| {name} | {len(items)} | {nme68.mean():.4f} | {nme51.mean():.4f} |")
    print("\n| what | " + " | ".join(f"NME {r}" for r in REGIONS) + " | mouth width ratio / corr "
          "| inner opening ratio / corr |\n|---|" + "---|" * (len(REGIONS) + 2))
    for name, items in pairs.items():
        print(f"| {name} | " + " | ".join(region_cells(items)) + " |")
    print(f"\nWide-open mouths (labelled inner opening > {args.open_mouth} of the inter-ocular "
          "distance)\n| what | wide-open faces | NME68 wide-open | NME68 others | predicted / "
          "labelled opening, wide-open | wide-open share of the summed NME68 |\n"
          "|---|---|---|---|---|---|")
    for name, items in pairs.items():
        print(f"| {name} | " + " | ".join(open_mouth_cells(items, args.open_mouth)) + " |")
    if shapes:
        print(f"\nMouth shapes, ARKit scores on the validation faces the teacher scored: ours, the "
              "fit's (to the labels, no expression prior) and the teacher's\n"
              "| shape | faces | mean ours / fit / teacher | ours vs teacher: slope / corr "
              "| fit vs teacher: slope / corr |\n|---|---|---|---|---|")
        print("\n".join(shape_rows(shapes)))
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
