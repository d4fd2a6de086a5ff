"""The weights shipped in the package: present, loadable without pickle, of the recorded hash."""
from __future__ import annotations

import hashlib
import re

import torch

from face_expr_ros.core.network import count_parameters
from face_expr_ros.core.weights import PACKAGE_WEIGHTS, load_weights, weights_info

CARD = PACKAGE_WEIGHTS.parent / "MODEL_CARD.md"


def test_shipped_weights_load_and_match_the_model_card():
    assert PACKAGE_WEIGHTS.is_file(), "face_expr_ros/weights/face_expr_net.safetensors is missing"
    assert PACKAGE_WEIGHTS.stat().st_size < 20 * 1024 * 1024
    net = load_weights()  # checks the content hash recorded at save time and every tensor shape
    digest = hashlib.sha256(PACKAGE_WEIGHTS.read_bytes()).hexdigest()
    card = CARD.read_text()
    assert digest in card, "MODEL_CARD.md must name the file's SHA-256"
    assert f"{count_parameters(net):,}" in card
    match = re.search(r"input (\d+)x\1", card)
    assert match and int(match.group(1)) == net.config.input_size
    with torch.no_grad():
        out = net(torch.rand(1, 3, net.config.input_size, net.config.input_size))
    assert out.expression.shape == (1, 53)
    assert "val_nme68" in weights_info()
