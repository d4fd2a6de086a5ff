"""`face_expr export-onnx`: the network as an ONNX model for ONNX Runtime (docs/onnx.md).

    face_expr export-onnx                       # the package's weights -> the cache the node reads
    face_expr export-onnx --weights W -o net.onnx --check

Prints the path, size, opset and, with ``--check``, the largest difference between ONNX Runtime and
torch on a random batch (an error above :data:`TOLERANCE`). Errors are raised and turned into one
line by ``face_expr``'s main: exit 1 for a failure, 2 for a wrong command line.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

TOLERANCE = 1e-4
CHECK_BATCH = 4


def add_export_onnx_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export-onnx", help="export the network to ONNX (the onnx backend's model)",
        description="Export the face network to ONNX with its weights' hash and config in the "
                    "metadata. Without -o it goes to the cache the onnx backend reads "
                    "($XDG_CACHE_HOME/face_expr_ros/onnx/<sha256>.onnx).")
    p.add_argument("--weights", type=Path, default=None,
                   help="network weights (default: $FACE_EXPR_WEIGHTS, else the package's)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="OUT.onnx",
                   help="the .onnx file to write (default: the cache)")
    p.add_argument("--check", action="store_true",
                   help=f"run the export in ONNX Runtime and compare it with torch on a random "
                        f"batch of {CHECK_BATCH} (fails above {TOLERANCE:g})")
    p.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> int:
    from .options import UsageError
    from ..core import onnx_backend
    from ..core.export import check_writable_folder
    from ..core.weights import load_weights, resolve_weights_path

    if args.output is not None:
        if args.output.suffix.lower() != ".onnx":
            raise UsageError(f"-o {args.output}: use a .onnx name")
        check_writable_folder(args.output)  # fail before the export, not after it
    weights = resolve_weights_path(args.weights)
    net = load_weights(weights)
    start = time.perf_counter()
    path = onnx_backend.export_onnx(net, args.output)
    seconds = time.perf_counter() - start
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {path} ({size_mb:.1f} MB, opset {onnx_backend.OPSET}, weights {weights} sha256 "
          f"{onnx_backend.weights_hash_of(net)[:12]}..., exported in {seconds:.1f} s)")
    if args.check:
        error = max_difference(net, path)
        verdict = "ok" if error <= TOLERANCE else "FAILED"
        print(f"check: max |onnx - torch| = {error:.2e} on a random batch of {CHECK_BATCH} "
              f"(tolerance {TOLERANCE:g}): {verdict}")
        if error > TOLERANCE:
            raise onnx_backend.OnnxBackendError(
                f"ONNX Runtime differs from torch by {error:.2e} > {TOLERANCE:g}")
    return 0


def max_difference(net, path: Path, batch: int = CHECK_BATCH, seed: int = 0) -> float:
    """Largest |onnx - torch| over every FaceParams field, on ``batch`` random crops."""
    import torch

    from ..core import onnx_backend

    runner = onnx_backend.OnnxFaceNet(path, net.config, onnx_backend.weights_hash_of(net), "cpu")
    size = net.config.input_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = net.cpu()(images).outputs()
    got = runner(images).outputs()
    return max(float((got[name] - value).abs().max()) for name, value in expected.items())
