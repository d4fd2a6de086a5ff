"""The face network on ONNX Runtime: export a :class:`FaceNet` to ONNX, run it, get FaceParams.

    net = load_weights()                           # the torch network (core.weights)
    onnx_net = load_onnx_net(net, device="cpu")    # cached export, checked against the weights
    params = onnx_net(images)                      # (B, 3, S, S) in [0, 1] -> FaceParams, as net

Export: ``torch.onnx.export(..., dynamo=True)`` (the torch.export-based exporter; the TorchScript one
is deprecated and announced for removal), opset :data:`OPSET`, a dynamic batch axis. It takes about
9 s on one CPU, once per weights: the file is cached at
``$XDG_CACHE_HOME/face_expr_ros/onnx/<weights sha256>.onnx`` (default ``~/.cache``) and written
atomically. The file's ``metadata_props`` record the source weights' content hash
(``core.weights.tensor_hash``) and the network config; loading checks both against the weights in
use: a cached file that does not match (or does not load) is exported again, an explicit file that
does not match is an :class:`OnnxBackendError`. ONNX files are protobuf: nothing is unpickled.

Execution providers: CUDAExecutionProvider when the requested device is CUDA and this onnxruntime has
it (the ``onnxruntime-gpu`` build), else CPUExecutionProvider. Outputs come back as torch tensors on
the requested device, so the code after the network is the same for both backends. Outputs equal
the torch network's within 1e-4 (measured ~3e-6, test/test_core_onnx.py).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .network import FaceNet, FaceParams, NetworkConfig
from .weights import tensor_hash

log = logging.getLogger(__name__)

OPSET = 18  # onnxruntime >= 1.14 runs it: older ORT builds on robots (Jetson) keep working
FORMAT = "face_expr_onnx/1"
INPUT_NAME = "images"
OUTPUT_NAMES = ("identity", "expression", "rotation", "translation", "scale")  # FaceParams order


def output_names(config: NetworkConfig) -> tuple[str, ...]:
    """The graph's outputs: :data:`OUTPUT_NAMES`, then the optional heads' the network has."""
    extra = (("emotion_logits",) if config.emotion_head else ()) + \
        (("presence_logit",) if config.presence_head else ())
    return OUTPUT_NAMES + extra
META_FORMAT, META_CONFIG = "face_expr.format", "face_expr.config"
META_HASH = "face_expr.weights_sha256"  # core.weights.tensor_hash of the source weights
META_TORCH = "face_expr.torch_version"
_EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "onnx_ir", "onnxscript")
INSTALL_HINT = ("pip install onnxruntime onnx onnxscript (or the package's extra: "
                "pip install -e '.[onnx]')")


class OnnxBackendError(RuntimeError):
    """onnxruntime missing, an unreadable or foreign ONNX file, or one exported from other weights."""


# ---------------------------------------------------------------------------------------------
# Imports and locations
# ---------------------------------------------------------------------------------------------
def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an OnnxBackendError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise OnnxBackendError(f"the onnx backend needs onnxruntime, which is not importable "
                               f"({err}); {INSTALL_HINT}") from None
    return onnxruntime


def exporter_available() -> str | None:
    """None when torch can export to ONNX here, else the reason (a missing package)."""
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError as err:
            return f"exporting needs {module} ({err}); {INSTALL_HINT}"
    return None


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/face_expr_ros/onnx`` (default ``~/.cache/face_expr_ros/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "face_expr_ros" / "onnx"


def cached_model_path(weights_hash: str) -> Path:
    """Where the export of the weights with content hash ``weights_hash`` is cached."""
    return cache_dir() / f"{weights_hash}.onnx"


def weights_hash_of(net: FaceNet) -> str:
    """The content hash of ``net``'s tensors (equal to the ``sha256`` its weights file records)."""
    return tensor_hash(net.state_dict())


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
class _TupleOutputs(nn.Module):
    """FaceNet with plain tensor outputs (:data:`OUTPUT_NAMES`): what an ONNX graph can return."""

    def __init__(self, net: FaceNet):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(images).outputs().values())


def export_model_bytes(net: FaceNet) -> bytes:
    """The serialised ONNX model of ``net`` (CPU, float32, eval mode) with its metadata.

    Input ``images`` (B, 3, S, S); outputs :data:`OUTPUT_NAMES` with FaceParams' shapes; B dynamic.
    Raises:
        OnnxBackendError: onnx or onnxscript missing, or the exporter failed.
    """
    missing = exporter_available()
    if missing:
        raise OnnxBackendError(missing)
    size = net.config.input_size
    wrapper = _TupleOutputs(copy.deepcopy(net).cpu().eval())
    # batch 2: an example of 1 would specialise the axis
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:  # the exporter reports its steps on stdout and logs every graph pass
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad(),
              torch.random.fork_rng(devices=[])):  # leaves the caller's random state alone
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (example,), None, dynamo=True, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=list(output_names(net.config)),
                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    except Exception as err:  # the exporter raises many types; all mean "no ONNX model"
        raise OnnxBackendError(f"torch.onnx.export failed: {type(err).__name__}: {err}") from err
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    proto = program.model_proto
    metadata = {META_FORMAT: FORMAT, META_HASH: weights_hash_of(net),
                META_CONFIG: json.dumps(net.config.to_dict(), sort_keys=True),
                META_TORCH: torch.__version__}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def export_onnx(net: FaceNet, path: str | os.PathLike | None = None) -> Path:
    """Export ``net`` to ``path`` (default: its cache file, :func:`cached_model_path`), atomically.

    Returns:
        The path written.
    Raises:
        OnnxBackendError: export failed. core.export.ExportError: the folder is not writable.
    """
    from .export import write_bytes_atomic

    target = Path(path).expanduser() if path is not None else cached_model_path(weights_hash_of(net))
    if path is None:
        target.parent.mkdir(parents=True, exist_ok=True)
    data = export_model_bytes(net)
    write_bytes_atomic(target, data)
    log.info("face_expr_ros: exported the network to %s (%.1f MB, opset %d)", target,
             len(data) / 1e6, OPSET)
    return target


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def providers_for(device: str | torch.device, available: list[str]) -> list[Any]:
    """Execution providers for a torch device: CUDA (that GPU) first when asked for and present."""
    device = torch.device(device)
    if device.type == "cuda":
        if "CUDAExecutionProvider" in available:
            return [("CUDAExecutionProvider", {"device_id": device.index or 0}),
                    "CPUExecutionProvider"]
        log.warning("face_expr_ros: device %s requested but this onnxruntime has no "
                    "CUDAExecutionProvider (providers: %s; install onnxruntime-gpu): running the "
                    "onnx backend on the CPU", device, ", ".join(available))
    return ["CPUExecutionProvider"]


class OnnxFaceNet:
    """An exported FaceNet in an onnxruntime InferenceSession; called like the torch net.

    Args:
        path: the .onnx file (exported by :func:`export_onnx`).
        config: the NetworkConfig of the weights in use; weights_hash: their content hash. The
            file's metadata must record the same, else OnnxBackendError.
        device: torch device the outputs go to; CUDA also selects the CUDA execution provider.
        threads: intra-op threads of the CPU provider; None = torch.get_num_threads() (the same
            budget as the torch backend, which follows OMP_NUM_THREADS).
    """

    def __init__(self, path: str | os.PathLike, config: NetworkConfig, weights_hash: str,
                 device: str | torch.device = "cpu", threads: int | None = None):
        ort = import_onnxruntime()
        self.path, self.config, self.device = Path(path), config, torch.device(device)
        self.threads = int(threads or torch.get_num_threads())
        self.session = _open_session(ort, self.path, self.threads,
                                     providers_for(self.device, ort.get_available_providers()))
        self.providers = tuple(self.session.get_providers())
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        check_metadata(self.metadata, config, weights_hash, self.path)
        _check_signature(self.session, config, self.path)

    def __call__(self, images: torch.Tensor) -> FaceParams:
        """(B, 3, S, S) float RGB in [0, 1] -> :class:`FaceParams` on ``device`` (as FaceNet)."""
        size = self.config.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"images must be (B, 3, {size}, {size}) RGB crops, got "
                             f"{tuple(images.shape)}")
        batch = images.detach().to("cpu", torch.float32).contiguous().numpy()
        names = output_names(self.config)
        outputs = self.session.run(list(names), {INPUT_NAME: batch})
        return FaceParams(**{name: torch.from_numpy(np.asarray(o)).to(self.device)
                             for name, o in zip(names, outputs)})

    def __repr__(self) -> str:
        return f"OnnxFaceNet({self.path}, providers={list(self.providers)}, threads={self.threads})"


def _open_session(ort: Any, path: Path, threads: int, providers: list[Any]) -> Any:
    if not path.is_file():
        raise OnnxBackendError(f"ONNX model {path} does not exist; write it with `face_expr "
                               "export-onnx -o FILE`, or leave the path empty for the cache")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        # as the node asks of OpenMP: idle threads sleep instead of spinning on a shared CPU
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: ORT warns about unused initialisers and such
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # InvalidProtobuf, Fail, ...: onnxruntime's own exception types
        raise OnnxBackendError(f"{path}: not a loadable ONNX model ({type(err).__name__}: "
                               f"{str(err).strip()[:300]})") from None


def check_metadata(metadata: dict[str, str], config: NetworkConfig, weights_hash: str,
                   path: str | os.PathLike) -> None:
    """Raise OnnxBackendError unless ``metadata`` says: our format, these weights, this config."""
    if metadata.get(META_FORMAT) != FORMAT:
        raise OnnxBackendError(f"{path}: not a face_expr_ros network export (metadata "
                               f"{META_FORMAT!r} = {metadata.get(META_FORMAT)!r}, expected "
                               f"{FORMAT!r}); export one with `face_expr export-onnx`")
    recorded = metadata.get(META_HASH, "")
    if recorded != weights_hash:
        raise OnnxBackendError(
            f"{path} was exported from other weights (sha256 {recorded[:12]}...) than the ones in "
            f"use ({weights_hash[:12]}...): export again with `face_expr export-onnx --weights "
            "W -o FILE`, or leave the ONNX path empty to use the cache")
    try:
        recorded_config = json.loads(metadata.get(META_CONFIG, ""))
    except json.JSONDecodeError:
        recorded_config = None
    if recorded_config != config.to_dict():
        raise OnnxBackendError(f"{path}: network config {recorded_config} differs from the "
                               f"weights' {config.to_dict()}; export again")


def _check_signature(session: Any, config: NetworkConfig, path: Path) -> None:
    size, expected = config.input_size, output_names(config)
    inputs, outputs = session.get_inputs(), [o.name for o in session.get_outputs()]
    shape = list(inputs[0].shape) if len(inputs) == 1 else None
    if (len(inputs) != 1 or inputs[0].name != INPUT_NAME or shape[1:] != [3, size, size]
            or sorted(outputs) != sorted(expected)):
        raise OnnxBackendError(f"{path}: unexpected graph signature (inputs "
                               f"{[(i.name, i.shape) for i in inputs]}, outputs {outputs}); "
                               f"expected {INPUT_NAME} [batch, 3, {size}, {size}] -> "
                               f"{', '.join(expected)}")


# ---------------------------------------------------------------------------------------------
# Load (export when needed)
# ---------------------------------------------------------------------------------------------
def load_onnx_net(net: FaceNet, path: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu", threads: int | None = None) -> OnnxFaceNet:
    """The ONNX Runtime twin of ``net``.

    ``path`` given: that file, which must have been exported from ``net``'s weights (else
    OnnxBackendError). None: the cache file of ``net``'s weights, exported first when it is
    missing, unreadable or stale.
    """
    weights_hash = weights_hash_of(net)
    if path is not None:
        return OnnxFaceNet(path, net.config, weights_hash, device, threads)
    import_onnxruntime()  # fail before a 9 s export that could not be used
    cached = cached_model_path(weights_hash)
    if cached.is_file():
        try:
            return OnnxFaceNet(cached, net.config, weights_hash, device, threads)
        except OnnxBackendError as err:
            log.warning("face_expr_ros: cached ONNX model unusable (%s); exporting it again", err)
    else:
        log.info("face_expr_ros: exporting the network to ONNX once for these weights "
                 "(cached at %s)", cached)
    export_onnx(net)
    return OnnxFaceNet(cached, net.config, weights_hash, device, threads)
