"""Jitter of ``face_expr video`` on a still head, with and without the node's One-Euro smoothing.

    .venv/bin/python bench/jitter.py                 # 150 frames, 30 fps, 320x240: 78 s here (2 busy CPUs)
    .venv/bin/python bench/jitter.py --frames 60 --noise 8

The clip (face_expr_ros.offline.synthetic): one astronaut head (scikit-image, public domain) that
never moves, fresh Gaussian sensor noise in every frame (--noise grey levels) and JPEG re-encoding
at qualities 70/80/90 in turn, written as an MJPG AVI. ``face_expr video`` runs on it twice
(``--min-hits 1``: all frames; then ``--no-smoothing``); since the head is still, every
frame-to-frame change is jitter. Printed: for yaw, pitch, roll (degrees) and the expression
coefficients (mean over the 53), the std over the clip and the mean |frame-to-frame change|,
smoothed, raw and their ratio (< 1: smoothing reduces the jitter).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face_expr_ros.cli import build_parser  # noqa: E402
from face_expr_ros.offline.jitter import ANGLES, Jitter, measure, read_track  # noqa: E402
from face_expr_ros.offline.synthetic import still_head_frames, write_video  # noqa: E402
from face_expr_ros.cli.video import process_video  # noqa: E402


def run(clip: Path, out: Path, smoothing: bool) -> Jitter:
    """``face_expr video`` on ``clip`` (all frames reported); the jitter of its first track."""
    argv = ["video", str(clip), "--out", str(out), "--min-hits", "1", "--no-progress"]
    args = build_parser().parse_args(argv + ([] if smoothing else ["--no-smoothing"]))
    process_video(args)
    return measure(*read_track(out / f"{clip.stem}.jsonl"))


def table(smoothed: Jitter, raw: Jitter) -> str:
    """Markdown table: std and mean |step| per angle and for the coefficients; ratio = smoothed/raw."""
    rows = ["| quantity | std smoothed | std raw | ratio | mean abs step smoothed | "
            "mean abs step raw | ratio |", "|---|---|---|---|---|---|---|"]
    for i, name in enumerate(ANGLES):
        rows.append(_row(f"{name} (deg)", smoothed.angle_std[i], raw.angle_std[i],
                         smoothed.angle_step[i], raw.angle_step[i], "{:.3f}"))
    rows.append(_row("coefficients (mean of 53)", smoothed.coefficient_std, raw.coefficient_std,
                     smoothed.coefficient_step, raw.coefficient_step, "{:.4f}"))
    return "\n".join(rows)


def _row(name: str, std_s: float, std_r: float, step_s: float, step_r: float, fmt: str) -> str:
    return (f"| {name} | {fmt.format(std_s)} | {fmt.format(std_r)} | {std_s / std_r:.2f} | "
            f"{fmt.format(step_s)} | {fmt.format(step_r)} | {step_s / step_r:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--noise", type=float, default=4.0, help="sensor noise std, grey levels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="face_expr_jitter_") as tmp:
        folder = Path(tmp)
        clip = write_video(folder / "still_head.avi",
                           still_head_frames(args.frames, *args.size, noise_sigma=args.noise,
                                             seed=args.seed), fps=args.fps)
        start = time.perf_counter()
        smoothed = run(clip, folder, smoothing=True)
        raw = run(clip, folder, smoothing=False)
        seconds = time.perf_counter() - start
    print(f"still head, {args.frames} frames at {args.fps:g} fps, {args.size[0]}x{args.size[1]}, "
          f"noise sigma {args.noise:g}, JPEG 70/80/90, seed {args.seed}; frames with the face: "
          f"smoothed {smoothed.frames}, raw {raw.frames}; both runs {seconds:.0f} s")
    print(table(smoothed, raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
