"""Tracking mode vs per-frame detection: landmark NME on synthesised moving-face clips.

    .venv/bin/python bench/tracking_nme.py [--faces 12] [--frames 60] [--refine-iou 0.95 1.0 ...]
        [--weights W [W ...]]     # several networks, each in both modes (default: the shipped)

Each helen_train validation face (split by subject, training.datasets.split_of) is pasted into a
grey 640x480 frame moving along a Lissajous path (up to 150 px sideways, 60 px up and down; up to 16 px per frame at 30 fps) and
zooming by +-20 %, for ``--frames`` frames at 30 fps; the ground truth is the image's 68 landmarks
moved the same way. Both modes run core.Reconstructor with the node's tracker (min_hits 2,
smoothing on: landmarks are not smoothed): "detect" runs the detector on every frame, "follow" is
the tracking mode (crop from the previous landmarks, detection every 0.5 s), once per
``--refine-iou`` (core.follow.DEFAULT_REFINE_IOU; default: the library's). Reported: NME68
(inter-ocular %) over the frames where the face is published, frames published, detector runs,
refine passes per frame (core.follow.DEFAULT_REFINE_IOU); then, per face, tracking minus
detecting (:func:`print_per_face`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from face_expr_ros.core.follow import DEFAULT_REFINE_IOU  # noqa: E402
from face_expr_ros.core.reconstruct import Reconstructor  # noqa: E402
from face_expr_ros.core.tracking import Tracker  # noqa: E402
from face_expr_ros.training.datasets import build_index, load_image_rgb, split_of  # noqa: E402
from face_expr_ros.training.metrics import nme_per_image  # noqa: E402

FPS = 30.0
FRAME_HW = (480, 640)


def clip(image: np.ndarray, landmarks: np.ndarray, n: int):
    """(frame, truth landmarks) of the moving, zooming face, frame by frame."""
    for k in range(n):
        phase = 2 * np.pi * k / n
        zoom = 1.0 + 0.2 * np.sin(2 * phase)
        small = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        x = int((FRAME_HW[1] - w) / 2 + 150 * np.sin(phase))
        y = int((FRAME_HW[0] - h) / 2 + 60 * np.sin(3 * phase))
        frame = np.full(FRAME_HW + (3,), 90, np.uint8)
        a, b, c, d = max(x, 0), min(x + w, FRAME_HW[1]), max(y, 0), min(y + h, FRAME_HW[0])
        frame[c:d, a:b] = small[c - y:d - y, a - x:b - x]
        yield frame, landmarks * zoom + (x, y)


def run(mode: str, faces, n_frames: int, refine_iou: float = DEFAULT_REFINE_IOU,
        weights: str | None = None) -> dict:
    errors, published, detections, ms, refined, per_face = [], 0, 0, [], 0, []
    for image, truth in faces:
        start = len(errors)
        rec = Reconstructor(weights, device="cpu", tracker=Tracker(), follow=mode == "follow",
                            refine_iou=refine_iou)
        for k, (frame, gt) in enumerate(clip(image, truth, n_frames)):
            t0 = time.perf_counter()
            found = rec.reconstruct(frame, k / FPS)
            ms.append((time.perf_counter() - t0) * 1e3)
            detections += rec.timings.detected
            refined += rec.timings.refined
            if found:
                published += 1
                errors.append(100 * nme_per_image(found[0].landmarks, gt)[0])
        per_face.append(float(np.mean(errors[start:])) if len(errors) > start else float("nan"))
    return dict(per_face=np.array(per_face), nme=float(np.mean(errors)),
                median=float(np.median(errors)), published=published,
                frames=len(faces) * n_frames, detections=detections, ms=float(np.median(ms)),
                refined=refined / (len(faces) * n_frames))


def print_per_face(results: dict, weights: list, modes: list) -> None:
    """Where the tracking mode's cost is: per face, its clip's mean NME68 tracking minus
    detecting every frame; the median face, and how much of the mean the faces off by more than
    1 point carry (hard faces, on which the network's landmarks depend on the crop's framing)."""
    print("\nPer face, tracking minus detecting every frame (NME68 points):\n"
          "| weights | mode | mean | median face | faces off by > 1 (worse / better) | "
          "mean without them |\n|---|---|---|---|---|---|")
    for w in weights:
        detect = results[w, modes[0][0]]["per_face"]
        for name, _, _ in modes[1:]:
            diff = results[w, name]["per_face"] - detect
            big = np.abs(diff) > 1.0
            rest = f"{np.nanmean(diff[~big]):+.2f}" if (~big).any() else "-"
            print(f"| {w or 'shipped'} | {name} | {np.nanmean(diff):+.2f} | {np.nanmedian(diff):+.2f} "
                  f"| {int((diff > 1).sum())} / {int((diff < -1).sum())} | {rest} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=12)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--refine-iou", type=float, nargs="+", default=[DEFAULT_REFINE_IOU],
                    help="tracking-mode refine thresholds to compare (1.0: always, 0.0: never)")
    ap.add_argument("--weights", nargs="+", default=[None],
                    help=".safetensors networks to compare, each in both modes (default: shipped)")
    args = ap.parse_args()
    entries = [e for e in build_index("helen_train") if split_of(e) == "val"][: args.faces]
    faces = [(load_image_rgb(e.path), e.landmarks) for e in entries]
    print(f"bench/tracking_nme.py: {len(faces)} helen_train validation faces x {args.frames} "
          f"frames; load average {os.getloadavg()[0]:.1f}")
    print("| weights | mode | NME68 mean % | NME68 median % | frames published | detector runs | "
          "refine passes per frame | median ms per frame |\n|---|---|---|---|---|---|---|---|")
    modes = [("detect every frame", "detect", 1.0)] + [
        (f"tracking, refine_iou {v:g}", "follow", v) for v in args.refine_iou]
    runs = [(w, *mode) for w in args.weights for mode in modes]  # each network's rows together
    results = {}
    for weights, name, mode, refine_iou in runs:
        r = results[weights, name] = run(mode, faces, args.frames, refine_iou, weights)
        refined = "-" if mode == "detect" else f"{r['refined']:.2f}"
        print(f"| {weights or 'shipped'} | {name} | {r['nme']:.2f} | {r['median']:.2f} | "
              f"{r['published']} / {r['frames']} "
              f"| {r['detections']} | {refined} | {r['ms']:.1f} |", flush=True)
    print_per_face(results, args.weights, modes)
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
