"""Command-line inputs -> image files: files, folders (their images, recursively) and glob patterns.

Each input either expands to files or yields a :class:`BadInput` with a one-line reason, so a
command can process what it can and report the rest.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class BadInput:
    """An input that gave no image file, and why."""

    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.text}: {self.reason}"


def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[BadInput]]:
    """Image files (in input order, folders and globs sorted, duplicates once) and bad inputs.

    A file named explicitly is taken whatever its suffix (the decoder judges it); folders and globs
    contribute files with an image suffix (:data:`IMAGE_SUFFIXES`, any case).
    """
    files: list[Path] = []
    bad: list[BadInput] = []
    seen: set[Path] = set()
    for text in inputs:
        found, problem = _expand_one(text)
        if problem is not None:
            bad.append(BadInput(text, problem))
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, bad


def _expand_one(text: str) -> tuple[list[Path], str | None]:
    path = Path(text).expanduser()
    if path.is_dir():
        images = _images_under(path)
        if not images:
            return [], f"folder has no images (looked for {', '.join(IMAGE_SUFFIXES)})"
        return images, None
    if path.exists():
        return [path], None
    if GLOB_CHARS & set(text):
        matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
        images = [m for m in matches if m.is_file() and _is_image_name(m)]
        if not images:
            return [], "no image file matches this pattern"
        return images, None
    return [], "no such file or folder"


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and _is_image_name(p))


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def output_stems(files: list[Path]) -> list[str]:
    """A distinct output stem per file: the file's stem, ``stem-2``, ``stem-3``... on collisions."""
    stems: list[str] = []
    used: set[str] = set()
    for path in files:
        stem, n = path.stem, 1
        while stem in used:
            n += 1
            stem = f"{path.stem}-{n}"
        used.add(stem)
        stems.append(stem)
    return stems
