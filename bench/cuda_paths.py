"""The inference paths on a GPU against the CPU: torch on CUDA, ONNX Runtime's CUDA provider.

    python bench/cuda_paths.py [--weights FILE] [--repeats 20]
    python bench/cuda_paths.py --device cpu      # the same rows on the CPU (a dry run of the bench)

Runs core.Reconstructor on the example frames (offline.examples) four ways: torch on the CPU (the
reference), torch on CUDA, the onnx backend with CUDA asked for (CUDAExecutionProvider when this
onnxruntime has it; it says which providers ran), and the tracking mode on CUDA over a synthetic
moving-face clip. Per path: faces found, the largest landmark / coefficient / rotation difference
from the reference on the same frames, and the median ms per frame over ``--repeats`` calls of the
frontal frame (detector included; it runs on the CPU in every path). Exits 2 when torch sees no GPU
(nothing to compare). The numbers of the first GPU run are in docs/node.md, "On a GPU".
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face_expr_ros.core.reconstruct import Reconstructor  # noqa: E402
from face_expr_ros.offline.examples import example_frames  # noqa: E402
from face_expr_ros.offline.synthetic import entering_faces_frame  # noqa: E402
from train_speed import timed  # noqa: E402  (bench/, beside this script; CUDA-synchronised)


def faces_of(rec: Reconstructor, frames: dict[str, np.ndarray]) -> dict[str, list]:
    return {name: rec.reconstruct(frame, timestamp=0.0) for name, frame in frames.items()}


def largest_differences(ref: dict[str, list], other: dict[str, list]) -> tuple[float, float, float]:
    """Max |difference| of landmarks (px), coefficients and rotation entries, face by face."""
    lm = coef = rot = 0.0
    for name, faces in ref.items():
        if len(faces) != len(other[name]):
            return float("nan"), float("nan"), float("nan")
        for a, b in zip(faces, other[name]):
            lm = max(lm, float(np.abs(a.landmarks - b.landmarks).max()))
            coef = max(coef, float(np.abs(a.coefficients - b.coefficients).max()))
            rot = max(rot, float(np.abs(a.rotation - b.rotation).max()))
    return lm, coef, rot


def tracking_row(weights: str | None, device: str, repeats: int) -> str:
    """The tracking mode on ``device`` over a clip: faces per frame and ms per frame."""
    rec = Reconstructor(weights, device=device, backend="torch", follow=True)
    counts, times = [], []
    for i in range(max(repeats, 30)):
        t = 5.0 + i / 30.0  # two heads in view
        frame = entering_faces_frame(t)
        start = time.perf_counter()
        counts.append(len(rec.reconstruct(frame, timestamp=t)))  # (outputs are on the CPU)
        times.append((time.perf_counter() - start) * 1e3)
    rec.close()
    return (f"{'tracking, torch ' + device:<26} {rec.backend:<8} {'-':>7} {'-':>9} {'-':>9} "
            f"{statistics.median(times):>9.1f}   faces per frame {min(counts)}-{max(counts)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("torch sees no GPU (torch.cuda.is_available() is False): nothing to compare")
        return 2
    import onnxruntime as ort
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"GPU: {gpu}; torch {torch.__version__}; onnxruntime "
          f"{ort.__version__}, providers {ort.get_available_providers()}")
    frames = example_frames()
    paths = [("torch cpu", "cpu", "torch"), (f"torch {args.device}", args.device, "torch"),
             (f"onnx, {args.device} asked", args.device, "onnx")]
    recs = {name: Reconstructor(args.weights, device=device, backend=backend)
            for name, device, backend in paths}
    results = {name: faces_of(rec, frames) for name, rec in recs.items()}
    reference = results["torch cpu"]
    print(f"\n{'path':<26} {'backend':<8} {'faces':>7} {'lm px':>9} {'coef':>9} {'ms/frame':>9}"
          f"   (max |diff| vs torch cpu; rotation in the note)")
    for name, rec in recs.items():
        lm, coef, rot = largest_differences(reference, results[name])
        found = sum(len(f) for f in results[name].values())
        ms = 1e3 * timed(lambda: rec.reconstruct(frames["frontal"], timestamp=0.0), args.repeats)
        print(f"{name:<26} {rec.backend:<8} {found:>7} {lm:>9.2e} {coef:>9.2e} {ms:>9.1f}"
              f"   rotation {rot:.1e}; {rec.backend_reason}")
    onnx = recs[f"onnx, {args.device} asked"].network
    print(f"onnx session providers: {list(getattr(onnx, 'providers', ['(torch network)']))}")
    print(tracking_row(args.weights, args.device, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
