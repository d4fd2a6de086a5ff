"""Output files that appear complete or not at all.

Each output is written under a hidden temporary name in the destination folder; :meth:`commit`
renames them all to their final names when the run succeeded, and leaving the ``with`` block
without a commit (an error, Ctrl-C) removes them. The temporary files are created at once, so a
folder that cannot take files fails before any work.

    with AtomicOutputs(out_dir) as outputs:
        csv_tmp = outputs.add("clip.csv")        # write to csv_tmp ...
        outputs.commit()                          # -> out_dir/clip.csv
"""
from __future__ import annotations

import os
from pathlib import Path

from ..core.export import ExportError, check_writable_folder, fsync_path, temporary_path


def prepare_output_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) if missing and prove that it takes new files, before
    any work: a probe file is created and removed (this also catches what permissions do not
    show, e.g. /proc or a read-only mount for root).

    Raises:
        ExportError: it is a file, cannot be created, or cannot take files.
    """
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ExportError(f"cannot write to {path}: it is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"cannot write to {path}: cannot create it ({err.strerror or err})") from None
    check_writable_folder(path / "probe")
    probe = temporary_path(path / "face_expr_probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        raise ExportError(f"cannot write to {path}: {err.strerror or err}") from None
    return path


class AtomicOutputs:
    """Temporary files in ``folder`` renamed to their final names by :meth:`commit`.

    Raises:
        ExportError: ``folder`` is not a folder, cannot be created or is not writable
            (:func:`prepare_output_folder`).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = prepare_output_folder(folder)
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)

    def add(self, name: str) -> Path:
        """Create the temporary file for the output ``name`` and return its path.

        The temporary name keeps the suffix (OpenCV picks a video's container by it).
        """
        final = self.folder / name
        if final.is_dir():
            raise ExportError(f"cannot write {final}: it is a folder")
        temporary = temporary_path(final)
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as err:
            raise ExportError(f"cannot write to {self.folder}: {err.strerror or err}") from err
        self._pending.append((temporary, final))
        return temporary

    def commit(self) -> list[Path]:
        """Rename every temporary file to its final name (replacing older files); the final paths."""
        committed: list[Path] = []
        try:
            for temporary, final in self._pending:
                fsync_path(temporary)  # the data is on disk before the name points to it
                os.replace(temporary, final)
                committed.append(final)
        except OSError as err:
            raise ExportError(f"cannot write {final}: {err.strerror or err}") from err
        finally:
            self.discard()
        return committed

    def discard(self) -> None:
        """Remove the temporary files not yet renamed."""
        for temporary, _ in self._pending:
            temporary.unlink(missing_ok=True)
        self._pending = []

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
