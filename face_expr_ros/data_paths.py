"""Where the development data lives (never shipped, never committed)."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "FACE_EXPR_DATA"


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Explicit ``path`` > ``$FACE_EXPR_DATA`` > ``../shared/data`` beside the checkout.

    Raises:
        FileNotFoundError: naming the places looked at.
    """
    if path:
        candidates = [Path(path).expanduser()]
    elif os.environ.get(DATA_ENV_VAR):
        candidates = [Path(os.environ[DATA_ENV_VAR]).expanduser()]
    else:
        candidates = [Path(__file__).resolve().parents[1].parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "training data folder not found (looked at: " + ", ".join(map(str, candidates)) +
        f"); pass --data DIR or set ${DATA_ENV_VAR}")
