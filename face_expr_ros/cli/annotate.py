"""``face_expr annotate``: the command line of :mod:`face_expr_ros.training.annotate`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .options import UsageError, non_negative_int, positive_int


def add_annotate_command(commands: argparse._SubParsersAction) -> None:
    """Register ``face_expr annotate``."""
    from ..training.teacher import ASSUME_CROP_BELOW, DEFAULT_TEACHER, teacher_names

    parser = commands.add_parser(
        "annotate", help="teacher landmarks (68 iBUG points) for unlabelled image folders",
        description="Detect the faces of every image under each DIR and write one face's 68 iBUG "
                    "landmarks, scores and head pose to CACHE/annotations.jsonl (append-only; a "
                    "rerun resumes): the largest face, or in a set with human landmarks "
                    "(helen_train, ytf_train) the face they are of.")
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR",
                        help="image folders (searched recursively); the folder name is the set")
    parser.add_argument("--out", type=Path, required=True, metavar="CACHE",
                        help="cache folder (created; annotations.jsonl inside)")
    parser.add_argument("--teacher", choices=teacher_names(), default=DEFAULT_TEACHER,
                        help=f"landmark teacher (default {DEFAULT_TEACHER}; docs/teacher.md)")
    parser.add_argument("--workers", type=positive_int, default=max(1, min(2, os.cpu_count() or 1)),
                        metavar="N", help="worker processes (default: 2, or 1 on one core)")
    parser.add_argument("--limit", type=non_negative_int, default=None, metavar="N",
                        help="at most N new images per folder (a trial run)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="redo images whose cached status is 'failed'")
    parser.add_argument("--assume-crop-below", type=int, default=ASSUME_CROP_BELOW, metavar="PX",
                        help="images with a shorter side <= PX px are face crops: with no face "
                             f"detected, dlib predicts in the whole image (default {ASSUME_CROP_BELOW}"
                             ", 0 = off)")
    parser.set_defaults(run=_run_annotate)


def _run_annotate(args: argparse.Namespace) -> int:
    from ..training.annotate import CACHED, REDONE, STATUSES, TeacherFactory, annotate_folders
    from ..training.datasets import TEACHER_FILE
    from ..training.teacher import create_teacher

    for folder in args.folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: not a folder")
    # fail now, not in a worker (TeacherUnavailable: one line from face_expr's main)
    create_teacher(args.teacher, args.assume_crop_below).close()
    counts = annotate_folders(args.folders, args.out, TeacherFactory(args.teacher,
                              args.assume_crop_below), args.workers, args.limit, args.retry_failed)
    new = sum(counts[s] for s in STATUSES) - counts[REDONE]
    redone = f", {counts[REDONE]} redone on their labelled face" if counts[REDONE] else ""
    print(f"annotated {counts['ok']}, no face {counts['no_face']}, failed {counts['failed']} "
          f"({new} new images{redone}, {counts[CACHED]} already in {args.out / TEACHER_FILE})")
    return 0
