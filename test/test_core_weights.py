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
        expected = net(x).outputs()
        for name, value in loaded(x).outputs().items():
            torch.testing.assert_close(value, expected[name])
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


def test_weights_without_the_optional_heads_load_and_give_none(tmp_path):
    """Weights saved before the emotion/presence heads (no such config keys, no such tensors)."""
    import json

    from safetensors import safe_open

    net = FaceNet(SMALL).eval()
    path = save_weights(tmp_path / "w.safetensors", net)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    config = json.loads(metadata["config"])
    for key in ("emotion_head", "presence_head"):
        config.pop(key)
    metadata["config"] = json.dumps(config)  # as written by the earlier version
    save_file(load_file(str(path)), str(path), metadata=metadata)
    loaded = load_weights(path)
    assert not loaded.config.emotion_head and not loaded.config.presence_head
    with torch.no_grad():
        out = loaded(torch.rand(1, 3, 64, 64))
    assert out.emotion is None and out.presence is None


def test_weights_with_heads_round_trip(tmp_path):
    import dataclasses

    config = dataclasses.replace(SMALL, emotion_head=True, presence_head=True)
    torch.manual_seed(2)
    net = FaceNet(config).eval()
    loaded = load_weights(save_weights(tmp_path / "w.safetensors", net))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    torch.testing.assert_close(a.emotion, b.emotion)
    torch.testing.assert_close(a.presence, b.presence)
