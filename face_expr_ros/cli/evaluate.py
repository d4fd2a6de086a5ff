"""``face_expr eval``: the command line of :mod:`face_expr_ros.training.evaluate`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import UsageError, add_model_options, positive_int


def evaluate_doc() -> str:
    """The first paragraph of training.evaluate's docstring (numpy is imported with it)."""
    from ..training import evaluate

    return evaluate.__doc__.split("\n\n")[0]


def add_eval_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", help="landmark NME and expression AUCs on held-out subjects",
                            description=evaluate_doc())
    p.add_argument("--data", type=Path, help="data root (default: $FACE_EXPR_DATA or ../shared/data)")
    p.add_argument("--limit", type=positive_int, help="at most N images per set and label (quick check)")
    add_model_options(p, face_model=False)
    p.add_argument("--teacher-cache", type=Path, default=None, metavar="DIR",
                   help="teacher cache (face_expr annotate): print the side-by-side table of the "
                        "network(s) and the teacher's own outputs on the same faces "
                        "(training/compare.py) instead")
    p.add_argument("--compare", type=Path, action="append", default=[], metavar="FILE",
                   help="more weights, one column each beside --weights (with --teacher-cache)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    if args.compare and args.teacher_cache is None:
        raise UsageError("--compare needs --teacher-cache (the side-by-side table)")
    if args.teacher_cache is not None:
        from ..training.compare import compare, format_comparison

        result = compare([args.weights, *args.compare], args.data, args.teacher_cache, args.limit,
                         args.device, args.backend)
        print(format_comparison(result))
    else:
        from ..training.evaluate import evaluate, format_table

        result = evaluate(args.weights, args.data, args.limit, args.device, args.backend,
                          args.teacher_cache).to_dict()
        print(format_table(result))
    if args.json:
        from ..core.export import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps(result, indent=2).encode())
    return 0
