"""`face_expr train` and `face_expr eval` command-line entry points."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml


def _override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. batch_size=32), got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def add_train_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train", help="train the network (landmark MSE + affine consistency + priors)",
        description="Train the face network on the configured sets. Multi-process data-parallel: "
                    "torchrun --nproc_per_node N -m face_expr_ros.cli train --config FILE")
    p.add_argument("--config", type=Path, help="YAML training config (docs/training.md); "
                   "missing keys take the defaults")
    p.add_argument("--set", dest="overrides", type=_override, nargs="+", default=[],
                   action="extend", metavar="KEY=VALUE",
                   help="override config keys, e.g. max_steps=100 data.workers=0 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--precise-bn", type=int, default=0, metavar="N",
                   help="no training: re-estimate the batch-norm statistics of OUTPUT/WEIGHTS on N "
                        "training batches of faces, validate, write OUTPUT/precise_bn.safetensors")
    p.add_argument("--weights-name", default="best.safetensors", metavar="WEIGHTS",
                   help="with --precise-bn: which weights of OUTPUT (default best.safetensors)")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from ..training.config import load_config
    from ..training.train import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.config is not None and not args.config.is_file():
        raise FileNotFoundError(f"training config {args.config} does not exist")
    config = load_config(args.config, dict(args.overrides))
    if args.precise_bn:
        from .train import precise_batch_norm

        print(json.dumps(precise_batch_norm(config, args.weights_name, args.precise_bn), indent=2))
        return 0
    result = train(config, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    return 0
