"""Network weights as safetensors: save with the architecture and a content hash, load with checks.

Never unpickles: tensors come from safetensors, the architecture from a JSON string in its metadata.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from .export import write_bytes_atomic
from .network import FaceNet, NetworkConfig

PACKAGE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "face_expr_net.safetensors"
WEIGHTS_ENV_VAR = "FACE_EXPR_WEIGHTS"


class WeightsError(RuntimeError):
    """Weights missing, unreadable, of another architecture, or altered (hash mismatch)."""


def tensor_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_weights(path: str | os.PathLike, net: FaceNet, extra: dict | None = None) -> Path:
    """Write ``net``'s state (float32) with its config and hash; temporary name, then rename."""
    state = {k: v.detach().cpu().float().contiguous() if v.is_floating_point() else v.detach().cpu()
             for k, v in net.state_dict().items()}
    metadata = {"format": "face_expr_net/1", "config": json.dumps(net.config.to_dict()),
                "sha256": tensor_hash(state)}
    metadata.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(out, save(state, metadata=metadata))


def resolve_weights_path(path: str | os.PathLike | None = None) -> Path:
    """Explicit ``path`` > ``$FACE_EXPR_WEIGHTS`` > the weights shipped in the package."""
    candidate = Path(path or os.environ.get(WEIGHTS_ENV_VAR) or PACKAGE_WEIGHTS).expanduser()
    if not candidate.is_file():
        raise WeightsError(
            f"network weights not found at {candidate}; pass a .safetensors file (weights parameter, "
            f"--weights, ${WEIGHTS_ENV_VAR}) or train one with `face_expr train --config FILE`")
    return candidate


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None


def load_weights(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FaceNet:
    """Build the network recorded in the file and load its tensors; checks shapes and the hash."""
    resolved = resolve_weights_path(path)
    metadata = read_metadata(resolved)
    if metadata.get("format") != "face_expr_net/1" or "config" not in metadata:
        raise WeightsError(f"{resolved}: not face_expr_ros network weights (format "
                           f"{metadata.get('format')!r})")
    try:
        config = NetworkConfig(**json.loads(metadata["config"]))
    except (TypeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{resolved}: unusable network config in metadata ({err})") from None
    try:
        state = load_file(str(resolved))
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{resolved}: cannot read tensors ({err})") from None
    if metadata.get("sha256") != tensor_hash(state):
        raise WeightsError(f"{resolved}: tensor hash differs from the one recorded at save time "
                           "(the file was altered or damaged)")
    net = FaceNet(config)
    expected = net.state_dict()
    problems = [f"{k}: file {tuple(state[k].shape)} vs network {tuple(v.shape)}"
                for k, v in expected.items() if k in state and state[k].shape != v.shape]
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if problems or missing or unexpected:
        raise WeightsError(f"{resolved}: does not fit the network: shape mismatches {problems[:3]}, "
                           f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    net.load_state_dict(state)
    return net.to(device).eval()


def weights_info(path: str | os.PathLike | None = None) -> dict:
    """The metadata of a weights file, JSON values decoded (for model cards and logs)."""
    info = {}
    for key, value in read_metadata(resolve_weights_path(path)).items():
        try:
            info[key] = json.loads(value)
        except json.JSONDecodeError:
            info[key] = value
    return info
