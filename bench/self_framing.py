"""Crops framed on the network's own landmarks, on still faces: is the tracking mode's framing a
fixed point as good as the detector's?

    .venv/bin/python bench/self_framing.py [--faces 60] [--passes 3] [--weights W]

For each helen_train validation face (split by subject, training.datasets.split_of) the network
runs on the crop of the detector's box as ``face_expr eval`` frames it (training.evaluate.faces_of:
"detect"), on the crop
framed on the human labels (the training framing: "labels"), and then ``--passes`` times on the
crop framed on its own previous landmarks, starting from the detector's (the tracking mode on a
face that does not move, core.follow without motion). Reported: NME68 mean (inter-ocular %) per
framing, and the last self-framed landmark box against the labels' (side ratio, centre offset in
sides, medians): a framing that drifts shows there.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from face_expr_ros.core.align import landmark_box, landmark_side  # noqa: E402
from face_expr_ros.core.reconstruct import Reconstructor  # noqa: E402
from face_expr_ros.training.datasets import build_index, load_image_rgb, split_of  # noqa: E402
from face_expr_ros.training.evaluate import faces_of  # noqa: E402
from face_expr_ros.training.metrics import nme_per_image  # noqa: E402


def box_offset(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(side ratio, centre dx / side, centre dy / side) of the predicted landmark box against the
    labels' (sides: the longer box side)."""
    bp, bl = landmark_box(predicted), landmark_box(labels)
    side = landmark_side(labels)
    centre = ((bp[:2] + bp[2:]) - (bl[:2] + bl[2:])) / 2 / side
    return landmark_side(predicted) / side, float(centre[0]), float(centre[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=60)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--weights", default=None, help=".safetensors network (default: shipped)")
    args = ap.parse_args()
    rec = Reconstructor(args.weights, device="cpu")
    entries = [e for e in build_index("helen_train") if split_of(e) == "val"][: args.faces]
    errors: dict[str, list[float]] = {"detect": [], "labels": []}
    offsets = []
    for entry in entries:
        image, labels = load_image_rgb(entry.path), entry.landmarks
        found = faces_of(rec, image)
        if not found:
            continue
        face = found[0]
        errors["detect"].append(nme_per_image(face.landmarks, labels)[0])
        framed = rec.reconstruct_landmarks(image, [labels], [1.0])[0]
        errors["labels"].append(nme_per_image(framed.landmarks, labels)[0])
        landmarks = face.landmarks
        for k in range(1, args.passes + 1):
            landmarks = rec.reconstruct_landmarks(image, [landmarks], [1.0])[0].landmarks
            errors.setdefault(f"own landmarks, pass {k}", []).append(
                nme_per_image(landmarks, labels)[0])
        offsets.append(box_offset(landmarks, labels))
    print(f"bench/self_framing.py: {len(errors['detect'])} of {len(entries)} helen_train validation "
          f"faces detected; weights {args.weights or 'shipped'}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| crop framed on | NME68 mean % |\n|---|---|")
    for name, values in errors.items():
        print(f"| {name} | {100 * np.mean(values):.2f} |")
    ratio, dx, dy = np.median(np.array(offsets), axis=0)
    print(f"last pass's landmark box / labels' box: side ratio {ratio:.3f}, centre offset "
          f"{dx:+.4f} / {dy:+.4f} sides (x / y, medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
