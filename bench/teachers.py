"""Which teacher annotates the unlabelled sets: accuracy against human labels, and speed.

    .venv/bin/python bench/teachers.py                 # the tables of docs/teacher.md
    .venv/bin/python bench/teachers.py --fit-map       # also refit the MediaPipe 478 -> 68 map

Accuracy: NME (mean point error / inter-ocular distance of the human label, outer eye corners 36-45)
over all 68 points and the 51 inner points 17-67, of the largest face each teacher finds, on all of
helen_train and a fixed random sample of ytf_train. The MediaPipe map is fitted on helen split A
(half of the photo ids) and evaluated on split B and ytf only. dlib's predictor was trained on 300-W,
which contains helen_train: its helen numbers are optimistic; ytf is the fairer comparison.

Speed: one process, per-image time (read + teacher) on samples of each unlabelled set, median; the
one-hour estimate assumes 2 worker processes on 2 cores.
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face_expr_ros.data_paths import data_root  # noqa: E402
from face_expr_ros.training import landmark_map  # noqa: E402
from face_expr_ros.training.datasets import (load_image_rgb, read_keypoints_csv,  # noqa: E402
                                             read_pts)
from face_expr_ros.training.metrics import nme_per_image as nme  # noqa: E402
from face_expr_ros.training.teacher import create_teacher, teacher_names  # noqa: E402

UNLABELLED = {"utkface": 9780, "lfw_gray": 10048, "fer2013_train": 28709}


def helen(root: Path) -> list[tuple[str, Path, np.ndarray]]:
    folder = root / "helen_train"
    return [(p.stem, p, read_pts(folder / "landmarks" / (p.stem + ".pts")))
            for p in sorted((folder / "images").glob("*.jpg"))]


def ytf(root: Path, n: int, base: int, seed: int = 0) -> list[tuple[str, Path, np.ndarray]]:
    folder = root / "ytf_train"
    table = read_keypoints_csv(folder / "keypoints.csv", base=base)
    names = sorted(table)
    pick = np.random.default_rng(seed).choice(len(names), size=min(n, len(names)), replace=False)
    return [(names[i], folder / "images" / names[i], table[names[i]]) for i in sorted(pick)]


def helen_split(name: str) -> str:
    """'A' (map fitting) or 'B' (held out), by photo id so two faces of one photo stay together."""
    return "AB"[zlib.crc32(name.split("_")[0].encode()) % 2]


def run_teacher(teacher, samples) -> dict:
    """Largest face per image: (N, 68, 2) landmarks (NaN where none), dense mesh, found mask."""
    n = len(samples)
    out = {"lm": np.full((n, 68, 2), np.nan), "dense": np.full((n, 478, 2), np.nan),
           "found": np.zeros(n, bool), "seconds": np.zeros(n)}
    for i, (_, path, _) in enumerate(samples):
        start = time.perf_counter()
        faces = teacher(load_image_rgb(path))
        out["seconds"][i] = time.perf_counter() - start
        if faces:
            out["found"][i] = True
            out["lm"][i] = faces[0].landmarks68
            if faces[0].dense is not None:
                out["dense"][i] = faces[0].dense
    return out


def table_row(label: str, result: dict, truth: np.ndarray, mask: np.ndarray | None = None) -> str:
    mask = np.ones(len(truth), bool) if mask is None else mask
    found = result["found"] & mask
    all68, inner = nme(result["lm"][found], truth[found])
    return (f"| {label} | {mask.sum()} | {found.sum() / mask.sum():.1%} | {np.median(all68):.4f} | "
            f"{all68.mean():.4f} | {np.median(inner):.4f} | {inner.mean():.4f} | "
            f"{(all68 > 0.10).mean():.1%} |")


def fit_map(dense: np.ndarray, truth: np.ndarray) -> tuple:
    """Choose k by 2-fold cross-validation inside the fitting half, then fit on all of it."""
    order = np.arange(len(truth))
    folds = order % 2 == 0
    scores = {}
    for k in (1, 2, 3, 4, 6, 8):
        errors = []
        for fold in (folds, ~folds):
            matrix = landmark_map.map_matrix(landmark_map.fit_map(dense[fold], truth[fold], k))
            predicted = np.einsum("km,nmd->nkd", matrix, dense[~fold])
            errors.append(nme(predicted, truth[~fold])[0])
        scores[k] = float(np.concatenate(errors).mean())
    best = min(k for k, v in scores.items() if v <= 1.01 * min(scores.values()))  # fewest points
    print("map: k -> cross-validated mean NME68 on split A:",
          ", ".join(f"{k}: {v:.4f}" for k, v in scores.items()), f"-> k = {best}")
    return landmark_map.fit_map(dense, truth, best)


def write_map(table: tuple) -> None:
    path = Path(landmark_map.__file__)
    text = path.read_text()
    start = text.index("MEDIAPIPE_TO_IBUG: tuple")
    end = text.index("\n\n", start)
    body = ",\n".join("    (" + ", ".join(f"({i}, {w})" for i, w in terms) + ",)" for terms in table)
    text = (text[:start] + "MEDIAPIPE_TO_IBUG: tuple[tuple[tuple[int, float], ...], ...] = (\n"
            + body + ",\n)" + text[end:])
    path.write_text(text)
    landmark_map._MATRIX = None
    print(f"wrote the fitted map into {path}")


def speed(name: str, root: Path, n: int) -> dict[str, float]:
    teacher = create_teacher(name)
    rates = {}
    for set_name in UNLABELLED:
        paths = sorted((root / set_name).rglob("*.jpg"))
        pick = np.random.default_rng(1).choice(len(paths), size=min(n, len(paths)), replace=False)
        seconds, found = [], 0
        for i in pick:
            start = time.perf_counter()
            found += bool(teacher(load_image_rgb(paths[i])))
            seconds.append(time.perf_counter() - start)
        rates[set_name] = 1.0 / float(np.median(seconds))
        print(f"| {name} | {set_name} | {len(pick)} | {found / len(pick):.1%} | "
              f"{1000 * np.median(seconds):.1f} | {rates[set_name]:.1f} |")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data root (default: shared/data)")
    parser.add_argument("--ytf", type=int, default=400, help="ytf_train images to sample")
    parser.add_argument("--ytf-base", type=int, default=1,
                        help="coordinate base of ytf keypoints.csv (1: see the residual check)")
    parser.add_argument("--speed", type=int, default=150, help="images per unlabelled set for speed")
    parser.add_argument("--teachers", nargs="+", default=list(teacher_names()))
    parser.add_argument("--fit-map", action="store_true",
                        help="refit the MediaPipe map on helen split A and write it into "
                             "landmark_map.py before evaluating")
    args = parser.parse_args()
    root = data_root(args.data)
    sets = {"helen_train": helen(root), "ytf_train": ytf(root, args.ytf, args.ytf_base)}
    truth = {k: np.stack([s[2] for s in v]).astype(np.float64) for k, v in sets.items()}
    split_b = np.array([helen_split(s[0]) == "B" for s in sets["helen_train"]])
    results = {}
    for name in args.teachers:
        teacher = create_teacher(name) if not (name == "mediapipe" and args.fit_map) else None
        if teacher is None:  # the map is being refitted: run with whatever table is there
            landmark_map._MATRIX = np.eye(68, 478)
            teacher = create_teacher(name)
        results[name] = {k: run_teacher(teacher, v) for k, v in sets.items()}
        teacher.close()
        if name == "mediapipe" and args.fit_map:
            res = results[name]["helen_train"]
            fit = res["found"] & ~split_b
            table = fit_map(res["dense"][fit], truth["helen_train"][fit])
            write_map(table)
            matrix = landmark_map.map_matrix(table)
            for set_name, res in results[name].items():
                res["lm"] = np.einsum("km,nmd->nkd", matrix, res["dense"])

    print("\n| teacher, set | images | face found | NME68 median | NME68 mean | NME51 median "
          "| NME51 mean | NME68 > 0.10 |\n|---|---|---|---|---|---|---|---|")
    for name, per_set in results.items():
        if name != "mediapipe":
            print(table_row(f"{name}, helen_train all (seen in training)", per_set["helen_train"],
                            truth["helen_train"]))
        print(table_row(f"{name}, helen_train split B", per_set["helen_train"],
                        truth["helen_train"], split_b))
        print(table_row(f"{name}, ytf_train sample (base {args.ytf_base})", per_set["ytf_train"], truth["ytf_train"]))

    print("\nMean residual (human label - teacher), px, over the 51 inner points "
          "(a coordinate-base offset shows as ~ +1 on one set only):")
    for name, per_set in results.items():
        for set_name, res in per_set.items():
            found = res["found"]
            residual = (truth[set_name][found] - res["lm"][found])[:, 17:].reshape(-1, 2).mean(0)
            print(f"  {name:9s} {set_name:12s} dx {residual[0]:+.2f}  dy {residual[1]:+.2f}")

    print("\n| teacher | set | images | face found | ms/image (median) | images/s |\n|---|---|---|---|---|---|")
    estimates = {}
    for name in args.teachers:
        rates = speed(name, root, args.speed)
        estimates[name] = sum(UNLABELLED[s] / rates[s] for s in UNLABELLED) / 2 / 60
    for name, minutes in estimates.items():
        print(f"{name}: all unlabelled sets ({sum(UNLABELLED.values())} images) on 2 workers "
              f"~ {minutes:.0f} min (ideal scaling from the 1-process median)")


if __name__ == "__main__":
    main()
