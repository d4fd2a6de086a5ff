"""The command line ``face_expr`` (no ROS needed except for ``face_expr demo``): one module per
subcommand (``add_<command>_command`` registers its arguments and handler), :mod:`.main` parses and
dispatches, :mod:`.options` holds the shared argparse value types. Nothing below core/, training/,
offline/ or ros/ imports this package."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
