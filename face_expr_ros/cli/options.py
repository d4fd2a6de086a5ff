"""argparse value types and options shared by the ``face_expr`` subcommands (a bad value: exit 2,
one line). Nothing heavy is imported here: ``face_expr --help`` stays instant."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

class UsageError(Exception):
    """The command line asks for something impossible (``face_expr``: exit code 2, nothing written)."""


BACKEND_CHOICES = ("auto", "torch", "onnx")
"""core.backend.BACKENDS, repeated here so the parser does not import torch (a test checks)."""


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def unit_float(text: str) -> float:
    """A number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_model_options(parser: argparse.ArgumentParser, face_model: bool = True) -> None:
    """``--weights``, ``--face-model`` (optional), ``--device``, ``--backend``: what builds a
    core.reconstruct.Reconstructor, the same in every command that runs the network."""
    parser.add_argument("--weights", type=Path, default=None, metavar="FILE",
                        help="network weights (.safetensors; default: $FACE_EXPR_WEIGHTS, else "
                             "the package's)")
    if face_model:
        parser.add_argument("--face-model", type=Path, default=None, metavar="PATH",
                            help="ict_face_model.npz (default: $FACE_EXPR_FACE_MODEL, then the "
                                 "standard places)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="what runs the network: auto (torch on CUDA, ONNX Runtime on CPU "
                             "when installed), torch, onnx (docs/onnx.md)")
