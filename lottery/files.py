"""Files of a run: atomic writes (a reader never sees a half-written ticket or summary), CSV text, and the check
that a zip file (a torch checkpoint) is complete."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename; an OSError (a full disk,
    a missing permission) is raised again naming `path`, with its errno kept."""
    path = Path(path)
    try:
        return _write_through_temporary(path, data)
    except OSError as err:
        if err.errno is None:
            raise OSError(f"could not write {path}: {err}") from err
        raise OSError(err.errno, f"could not write {path}: {err.strerror or err} (the file is unchanged; free space "
                      "or fix the folder's permissions, then run again)") from err


def _write_through_temporary(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should read like any other file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a failed write must not leave litter that looks like a result
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def csv_text(rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> str:
    """Rows as CSV text with a header line (``\\n`` line ends); keys beyond `fieldnames` are an error."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def zip_problem(path: str | os.PathLike) -> str | None:
    """What makes the zip file at `path` unreadable (a write cut short), or None when every member's CRC checks;
    reads the archive's bytes only, never unpickles (torch checkpoints are zip archives)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"not a complete zip archive ({err})"
    return None if bad is None else f"member {bad} fails its CRC check"
