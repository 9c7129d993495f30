"""A cell on a Ray node that does not share a disk with the driver: what the driver ships (the base config's text,
the IMP ticket a sanity cell starts from), the node's own folder the cell trains in, and the files that go back.

The node's folder mirrors the driver's `out` (`<node folder>/cells/<key>/...`): a cell's key counts paths inside
`out` as `<out>`, so the cell rewritten to the node's folder keeps its key and its folder name. Storage (an fsspec
URL) mirrors it too: `<storage>/cells/<key>/...`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from lottery.compare.cells import DONE, Cell
from lottery.files import atomic_write_bytes, atomic_write_text

NODE = "node.json"  # in a cell's folder on the driver: where the cell trained (Ray node, host, folder)
NODE_DIR = "LOTTERY_NODE_DIR"  # on a node: the folder cells train in (default: the node's temp dir)


@dataclass
class Job:
    """What a Ray node needs to train one cell without the driver's disk."""

    cell: Cell  # as built on the driver: its paths are inside the driver's `out`
    key: str  # the cell's key on the driver (its folder name there)
    out: str  # the driver's `out`
    tag: str  # the comparison's folder on the nodes (comparison_tag of the driver's out)
    base_name: str  # the base config's file name, and its text
    base_text: str
    common: list[str]  # the comparison's `args`
    threads: int
    storage: str | None = None


def comparison_tag(out: str) -> str:
    """A comparison's folder on the nodes, relative to their node dir: a hash of the driver's host and absolute
    `out` (comparisons of two drivers never share a folder), then `out`'s own name (to tell them apart there)."""
    where = Path(out).resolve()
    return f"{hashlib.sha1(f'{socket.gethostname()}:{where}'.encode()).hexdigest()[:12]}/{where.name}"


def node_out(tag: str) -> Path:
    """This node's folder for the comparison `tag` (in $LOTTERY_NODE_DIR, else the temp dir): the same on every
    attempt, so a cell that Ray retries on the same node resumes from its checkpoints."""
    return Path(os.environ.get(NODE_DIR) or tempfile.gettempdir()) / "lottery-compare" / tag


def moved(arg: str, old: str, new: str) -> str:
    """`arg` with a leading path `old` (the driver's out) replaced by `new`; other arguments unchanged."""
    if arg == old or arg.startswith(old.rstrip(os.sep) + os.sep):
        return new + arg[len(old):]
    return arg


def localize(job: Job, out: Path, ticket: bytes | None) -> tuple[str, Cell, list[str]]:
    """Write the base config and the cell's starting ticket (`ticket`, else fetched from the storage) under `out`;
    the base config's path there, the cell and the common arguments rewritten to `out`."""
    old, new = str(Path(job.out)), str(out)
    base = out / "base" / job.base_name
    if not base.is_file() or base.read_text() != job.base_text:
        atomic_write_text(base, job.base_text)
    cell = replace(job.cell, args=[moved(a, old, new) for a in job.cell.args],
                   source=None if job.cell.source is None else moved(job.cell.source, old, new))
    if cell.source is not None:
        if ticket is None:
            ticket = fetch(job.storage, relative(job.cell.source, job.out))
        atomic_write_bytes(cell.source, ticket)  # at the mirrored path, where the cell's arguments point
    return str(base), cell, [moved(a, old, new) for a in job.common]


def relative(path: str, out: str) -> str:
    """`path` relative to the comparison folder `out` (POSIX separators: a storage key)."""
    return Path(path).relative_to(Path(out)).as_posix()


def pack(folder: Path) -> dict[str, bytes]:
    """The files of a finished cell that go back to the driver: all but checkpoints (which stay on the node) and
    hidden files (locks, unfinished writes), by path relative to `folder`."""
    files = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder)
        if path.is_file() and path.suffix != ".ckpt" and not any(part.startswith(".") for part in name.parts):
            files[name.as_posix()] = path.read_bytes()
    return files


def where(folder: Path) -> bytes:
    """The text of NODE: the Ray node (None outside a Ray worker), the host and the folder a cell trained in."""
    ray = sys.modules.get("ray")  # a Ray worker has imported it; nothing else needs to
    node = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
    return json.dumps({"node_id": node, "host": socket.gethostname(), "folder": str(folder)}).encode()


def _url(storage: str, key: str) -> str:
    return f"{storage.rstrip('/')}/{key}"


def fetch(storage: str | None, key: str) -> bytes:
    """The file `key` (relative to the comparison folder) from the storage."""
    if storage is None:
        raise ValueError(f"no ticket was shipped for {key} and the comparison has no storage to fetch it from")
    import fsspec  # installed with Lightning; only a comparison with storage needs it

    try:
        with fsspec.open(_url(storage, key), "rb") as f:
            return f.read()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{_url(storage, key)} is not in the storage; the driver puts every IMP ticket a "
                                "cell starts from there before the cell starts: was it deleted?") from err


def publish(storage: str, prefix: str, files: dict[str, bytes]) -> None:
    """Put `files` under `<storage>/<prefix>/`, done.json last (a reader that sees it sees the rest)."""
    for name in sorted(files, key=lambda n: n == DONE):
        put(storage, f"{prefix}/{name}", files[name])


def put(storage: str, key: str, data: bytes) -> None:
    """Write `data` to the storage at `key` (relative to the comparison folder)."""
    import fsspec

    with fsspec.open(_url(storage, key), "wb", auto_mkdir=True) as f:  # a local folder is made; object stores have none
        f.write(data)


def stored(storage: str, key: str) -> bool:
    """Whether the storage holds `key`."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(_url(storage, key))
    return fs.exists(path)
