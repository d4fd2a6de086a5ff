"""Which engine runs the face network: torch, or ONNX Runtime (core.onnx_backend), and why.

``backend="auto"`` (the default of the node, the CLI and :class:`core.reconstruct.Reconstructor`):

1. the network's device is not the CPU (CUDA): torch — it is already fast there, and the ONNX CUDA
   provider needs the separate onnxruntime-gpu build;
2. on the CPU, onnx when onnxruntime imports and an ONNX model is at hand: the explicit
   ``onnx_model``, the cache file of these weights, or a fresh export to the cache (once, ~9 s;
   needs onnx + onnxscript);
3. else torch. Every choice is logged with its reason (``BackendChoice.reason``).

Measured on this project's CPU machine (docs/onnx.md, bench/backends.py): onnxruntime runs the
network several times faster than torch eager on the CPU at batch 1 and 4, hence rule 2. An export
that fails under "auto" falls back to torch with a warning; ``backend="onnx"`` raises instead.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch

from .network import FaceNet, FaceParams

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")


@dataclass
class BackendChoice:
    """name: "torch" or "onnx"; network: called as ``network(images) -> FaceParams``; reason: why."""

    name: str
    network: Callable[[torch.Tensor], FaceParams]
    reason: str


def choose_backend(net: FaceNet, backend: str = "auto", device: str | torch.device = "cpu",
                   onnx_model: str | os.PathLike | None = None,
                   threads: int | None = None) -> BackendChoice:
    """The engine for ``net`` (already on ``device``) under the rule of the module docstring.

    Args:
        backend: "auto", "torch" or "onnx".
        onnx_model: an exported .onnx file of these weights; None = the cache (exported if needed).
        threads: ONNX Runtime intra-op threads (None: torch.get_num_threads()).
    Raises:
        ValueError: unknown backend. core.onnx_backend.OnnxBackendError: "onnx" (or "auto" with an
            explicit ``onnx_model``) and the ONNX model cannot be used.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = torch.device(device)
    if backend == "torch":
        return BackendChoice("torch", net, "backend torch requested")
    if backend == "onnx":
        return _onnx(net, device, onnx_model, threads, "backend onnx requested")
    return _auto(net, device, onnx_model, threads)


def _onnx(net: FaceNet, device: torch.device, onnx_model, threads, why: str) -> BackendChoice:
    from .onnx_backend import load_onnx_net

    runner = load_onnx_net(net, onnx_model, device, threads)
    return BackendChoice("onnx", runner, f"{why}; {runner.path}, providers "
                                         f"{', '.join(runner.providers)}, {runner.threads} threads")


def _auto(net: FaceNet, device: torch.device, onnx_model, threads) -> BackendChoice:
    from . import onnx_backend
    from .export import ExportError

    if device.type != "cpu":
        return BackendChoice("torch", net, f"auto: torch on {device}")
    try:
        ort = onnx_backend.import_onnxruntime()
    except onnx_backend.OnnxBackendError as err:
        return BackendChoice("torch", net, f"auto: torch, {err}")
    why = f"auto: CPU and onnxruntime {ort.__version__}"
    if onnx_model is not None:
        return _onnx(net, device, onnx_model, threads, why)
    cached = onnx_backend.cached_model_path(onnx_backend.weights_hash_of(net))
    missing = None if cached.is_file() else onnx_backend.exporter_available()
    if missing:
        return BackendChoice("torch", net, f"auto: torch, no cached ONNX model and {missing}")
    try:
        return _onnx(net, device, None, threads, why)
    except (onnx_backend.OnnxBackendError, ExportError, OSError) as err:
        log.warning("face_expr_ros: the onnx backend is unavailable (%s); using torch", err)
        return BackendChoice("torch", net, f"auto: torch, the ONNX export failed ({err})")
