"""Weights: save/load round trip with the architecture, hash and shape checks, no pickle."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from face_expr_ros.core.network import FaceNet, NetworkConfig
from face_expr_ros.core.weights import WeightsError, load_weights, save_weights, weights_info

SMALL = NetworkConfig(input_size=64, width=0.25, feature_dim=64, n_identity=8)


def test_round_trip_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(1)
    net = FaceNet(SMALL).eval()
    path = save_weights(tmp_path / "w.safetensors", net, extra={"epoch": 3})
    loaded = load_weights(path)
    assert loaded.config == SMALL
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(net(x).astuple(), loaded(x).astuple()):
            torch.testing.assert_close(a, b)
    assert weights_info(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_altered_tensor_is_detected(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", FaceNet(SMALL))
    state = load_file(str(path))
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    state["expression_head.bias"] += 0.5
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match="hash differs"):
        load_weights(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_weights(junk)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(3)}, str(other))
    with pytest.raises(WeightsError, match="not face_expr_ros network weights"):
        load_weights(other)
