"""The face network alone: torch vs ONNX Runtime on the CPU, per batch size and thread count.

    .venv/bin/python bench/backends.py            # batches 1 4 16, 1 and 2 threads, ~1 minute
    .venv/bin/python bench/backends.py --repeats 50 --batches 1 3 --threads 1

Each thread count runs in a child pinned with ``taskset`` to that many CPUs (OMP_NUM_THREADS and
torch.set_num_threads the same; ONNX Runtime's intra-op threads the same; OMP_WAIT_POLICY=PASSIVE as
in the node). Inputs: random (B, 3, 128, 128) crops; the shipped weights (or --weights); the ONNX
model from the cache (core.onnx_backend, exported there first if missing, outside the timing).
Median over ``--repeats`` calls after 5 warm-up calls. ratio = torch / onnx (> 1: onnx is faster);
max diff = largest |onnx - torch| over every output. Timings on a shared machine are noisy: compare
the columns of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(call, repeats: int) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(threads: int, batches: list[int], repeats: int, weights: str | None) -> list[dict]:
    """One row per batch size, in this process (the parent pins it to ``threads`` CPUs)."""
    import torch

    from face_expr_ros.core.onnx_backend import load_onnx_net
    from face_expr_ros.core.weights import load_weights

    torch.set_num_threads(threads)
    net = load_weights(weights, "cpu")
    onnx_net = load_onnx_net(net, device="cpu", threads=threads)
    rows = []
    for batch in batches:
        size = net.config.input_size
        images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            torch_ms = median_ms(lambda: net(images), repeats)
            expected = net(images).outputs()
            got = onnx_net(images).outputs()
            diff = max(float((got[k] - v).abs().max()) for k, v in expected.items())
        onnx_ms = median_ms(lambda: onnx_net(images), repeats)
        rows.append(dict(threads=threads, batch=batch, torch=torch_ms, onnx=onnx_ms, diff=diff))
    return rows


def child(threads: int, args: argparse.Namespace) -> list[dict]:
    cmd = ["taskset", "-c", ",".join(str(i) for i in range(threads)), sys.executable, __file__,
           "--child", str(threads), "--repeats", str(args.repeats),
           "--batches", *map(str, args.batches)]
    cmd += ["--weights", args.weights] if args.weights else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": "PASSIVE"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    line = next((x for x in run.stdout.splitlines() if x.startswith("ROWS ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"measurement on {threads} thread(s) failed:\n{run.stderr[-3000:]}")
    return json.loads(line[5:])


def table(rows: list[dict]) -> str:
    header = ["threads", "batch", "torch ms/batch", "onnx ms/batch", "torch ms/face",
              "onnx ms/face", "ratio torch/onnx", "max diff"]
    body = [[str(r["threads"]), str(r["batch"]), f"{r['torch']:.2f}", f"{r['onnx']:.2f}",
             f"{r['torch'] / r['batch']:.2f}", f"{r['onnx'] / r['batch']:.2f}",
             f"{r['torch'] / r['onnx']:.2f}", f"{r['diff']:.1e}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per cell (median)")
    parser.add_argument("--weights", default=None,
                        help="default: $FACE_EXPR_WEIGHTS, else the package's")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print("ROWS " + json.dumps(measure(args.child, args.batches, args.repeats, args.weights)))
        return 0
    import onnxruntime
    import torch

    available = len(os.sched_getaffinity(0))
    threads = [t for t in args.threads if t <= available]
    started = time.monotonic()
    print(f"bench/backends.py: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}; median of {args.repeats}", flush=True)
    rows = [row for t in threads for row in child(t, args)]
    print(table(rows))
    print(f"\n{time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
