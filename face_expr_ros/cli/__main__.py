"""``python -m face_expr_ros.cli COMMAND ...`` (also what torchrun runs: ``torchrun ... -m
face_expr_ros.cli train``)."""
import sys

from .main import main

sys.exit(main())
