"""``face_expr demo``: the command line of :mod:`face_expr_ros.ros.demo` (ROS is imported only
when the demo runs: ``face_expr --help`` stays ROS-free)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="run face_expr_node on example frames over ROS 2 and show what it publishes",
        description="Start face_expr_node (subprocess, loopback DDS, own ROS_DOMAIN_ID), publish "
                    "example frames made from skimage.data.astronaut() (NASA, public domain) as "
                    "sensor_msgs/Image, print what comes back on faces/expression and write "
                    "overlay images re-synthesised from the messages.")
    parser.add_argument("--out", type=Path, default=Path("face_expr_demo"), metavar="DIR",
                        help="folder for the overlay PNGs (created; default ./face_expr_demo)")
    parser.add_argument("--weights", type=Path, default=None, metavar="W",
                        help="network weights .safetensors (default: $FACE_EXPR_WEIGHTS, else "
                             "the package's weights)")
    parser.add_argument("--face-model", type=Path, default=None, metavar="PATH",
                        help="ict_face_model.npz (default: the standard search order)")
    parser.add_argument("--no-overlays", action="store_true", help="do not write overlay images")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="seconds for the whole run, node start-up included (default 120)")
    parser.set_defaults(run=_run_demo)  # DemoError and WeightsError: one line from face_expr's main


def _run_demo(args: argparse.Namespace) -> int:
    from ..ros.demo import run_demo

    return run_demo(args.out, args.weights, args.face_model, not args.no_overlays, args.timeout)
