"""``face_expr data report``: the command line of :mod:`face_expr_ros.training.report`."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..training.report import SET_NAMES
from .options import positive_int


def add_data_command(commands: argparse._SubParsersAction) -> None:
    """Register ``face_expr data report`` on the ``face_expr`` subcommands."""
    parser = commands.add_parser("data", help="inspect the training data sets",
                                 description="Training data tools.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(run=None, help_parser=parser)
    report = actions.add_parser(
        "report", help="per-set counts, detector and landmark coverage, contact sheet",
        description="Print per set: images, readable, faces found by the detector, landmark "
                    "source and coverage; optionally write a contact sheet with the landmarks.")
    report.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="data root (default: $FACE_EXPR_DATA, then ../shared/data)")
    report.add_argument("--teacher-cache", type=Path, default=None, metavar="DIR",
                        help="folder with annotations.jsonl (teacher landmarks)")
    report.add_argument("--sheet", type=Path, default=None, metavar="PATH",
                        help="write the contact sheet PNG here")
    report.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="read and detect on N images per set, spread over the set (default all)")
    report.add_argument("--sets", nargs="+", default=None, choices=SET_NAMES, metavar="SET",
                        help=f"only these sets (default: all: {', '.join(SET_NAMES)})")
    report.add_argument("--detector", default="default",
                        help="core.detect backend name; 'none' to skip detection")
    report.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from ..training.report import run_report

    return run_report(args.data, args.teacher_cache, args.sheet, args.limit, args.sets,
                      args.detector)
