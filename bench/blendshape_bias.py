"""Our blendshape scores against the teacher's, per set: is a set's expression read off scale?

For each set with teacher blendshapes (MediaPipe Face Landmarker's 51 scores, `face_expr annotate`)
and each split, up to ``--limit`` faces through the inference path (detector -> crop -> network),
the ARKit view of our coefficients (core.arkit) against the teacher's scores of the same faces:
mean abs difference, mean of ours and of the teacher's over all shapes, and the shapes that differ
most on average (ours - teacher). A set whose training faces are far off the teacher too is not
fitted by the distillation at all (docs/training.md, "Blendshape scale per set").

    .venv/bin/python bench/blendshape_bias.py [--weights W [W ...]] [--limit 300]
        [--sets helen_train utkface lfw_gray] [--teacher-cache ~/.cache/face_expr_ros/teacher_v3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face_expr_ros.core.arkit import ARKIT_NAMES, to_arkit  # noqa: E402
from face_expr_ros.core.reconstruct import Reconstructor  # noqa: E402
from face_expr_ros.training.datasets import build_index, load_teacher_cache, split_of  # noqa: E402
from face_expr_ros.training.evaluate import largest_faces  # noqa: E402


def scores(rec: Reconstructor, entries) -> tuple[np.ndarray, np.ndarray]:
    """(ours, teacher) (N, 52) for the entries whose face is found (``face_expr eval``'s path)."""
    ours, theirs = [], []
    for entry, face in largest_faces(rec, entries):
        if face is not None:
            ours.append(to_arkit(face.names, face.coefficients))
            theirs.append(entry.blendshapes)
    return np.array(ours, np.float64).reshape(-1, 52), np.array(theirs, np.float64).reshape(-1, 52)


def row(name: str, ours: np.ndarray, theirs: np.ndarray, top: int) -> str:
    scored = np.isfinite(theirs).any(axis=0)  # tongueOut: never scored by the teacher
    diff = np.zeros(theirs.shape[1])
    diff[scored] = np.nanmean(ours[:, scored] - theirs[:, scored], axis=0)
    order = [j for j in np.argsort(-np.abs(diff)) if scored[j]][:top]
    worst = ", ".join(f"{ARKIT_NAMES[j]} {np.nanmean(ours[:, j]):.2f} / {np.nanmean(theirs[:, j]):.2f}"
                      for j in order)
    return (f"| {name} | {len(ours)} | {np.nanmean(np.abs(ours - theirs)[:, scored]):.4f} | "
            f"{ours[:, scored].mean():.3f} / {np.nanmean(theirs[:, scored]):.3f} | {worst} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+", default=[None], help="default: the package's")
    parser.add_argument("--sets", nargs="+", default=["helen_train", "utkface", "lfw_gray"])
    parser.add_argument("--limit", type=int, default=300, help="faces per set and split")
    parser.add_argument("--top", type=int, default=3, help="shapes listed per row")
    parser.add_argument("--teacher-cache", default="~/.cache/face_expr_ros/teacher_v3")
    args = parser.parse_args(argv)
    started = time.monotonic()
    cache = load_teacher_cache(Path(args.teacher_cache).expanduser())
    print(f"bench/blendshape_bias.py: up to {args.limit} faces per set and split, detector path; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| weights, set, split | faces | mean abs(ours - teacher) | mean score ours / teacher "
          "| most different shapes (ours / teacher) |\n|---|---|---|---|---|")
    for weights in args.weights:
        rec = Reconstructor(weights=weights, device="cpu", max_faces=1)
        for set_name in args.sets:
            entries = [e for e in build_index(set_name, None, cache) if e.blendshapes is not None]
            for split in ("train", "val"):
                chosen = [e for e in entries if split_of(e) == split][: args.limit]
                ours, theirs = scores(rec, chosen)
                name = f"{Path(weights).parent.name + '/' if weights else ''}" \
                       f"{Path(weights).name if weights else 'shipped'}, {set_name}, {split}"
                print(row(name, ours, theirs, args.top), flush=True)
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
