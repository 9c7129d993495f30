"""One writer per run folder: a lock file holding the owner's pid and host, taken over when its owner is gone."""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

LOCK = ".lottery.lock"  # in the folder a `lottery fit` (default_root_dir) or `lottery compare` (out) writes to
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # set by DDP launchers in every process
UNREADABLE_GRACE_S = 30.0  # a lock without a readable owner younger than this may be one being written


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


def is_rank_zero() -> bool:
    """False in the processes a distributed launcher started for ranks other than zero."""
    return all(os.environ.get(v, "0") in ("", "0") for v in RANK_VARIABLES)


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks after boot (Linux /proc), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """Whether the process of a lock's `owner` still runs: None when it runs on another host (unknowable here)."""
    if owner.get("host") != socket.gethostname():
        return None
    pid = int(owner["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by another user
    if _is_zombie(pid):
        return False
    started = owner.get("started")
    return started is None or _start_time(pid) in (None, started)  # a reused pid started later


def _describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "a process that has not written its pid yet"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("time", 0)))
    return f"{owner.get('command', 'lottery')} (pid {owner.get('pid')} on host {owner.get('host')}, since {since})"


class RunLock:
    """`<folder>/.lottery.lock`, created atomically (O_CREAT|O_EXCL) with the owner's pid and host; removed on release.

    A lock whose owner no longer runs on this host is stale and taken over with a warning; a live owner, or
    one on another host, makes `acquire` raise RunLockedError naming the folder and the owner.
    """

    def __init__(self, folder: str | os.PathLike, command: str = "lottery fit") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.command = command
        self.held = False

    def _owner_record(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
                "time": time.time(), "command": self.command}

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            owner = json.loads(path.read_text())
            return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunLockedError naming the folder and the process holding it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self._owner_record(), f)
            self.held = True
            return self
        raise RunLockedError(f"could not lock {self.folder}: {self.path} keeps reappearing; another process is "
                             "starting in this folder. Wait for it, or give this run another folder.")

    def _take_over_if_stale(self) -> None:
        """Remove the lock file when its owner is gone (with a warning); raise RunLockedError when it may run."""
        owner = self._read(self.path)
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile
        alive = owner_alive(owner) if owner is not None else (None if age < UNREADABLE_GRACE_S else False)
        if alive is not False:
            where = ("" if owner is None or alive else " (on another host: this one cannot tell whether it still "
                     f"runs; if it does not, delete {self.path})")
            raise RunLockedError(f"{self.folder} is in use by {_describe(owner)}{where}. Two runs writing to one folder "
                                 "would mix their files: wait for it to finish, or pass another folder "
                                 "(--trainer.default_root_dir for `lottery fit`, `out` for `lottery compare`).")
        aside = self.path.with_name(f"{LOCK}.{os.getpid()}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process took it over first
        if self._read(aside) != owner:  # another process replaced the stale lock between our read and rename
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.unlink(aside)
            return
        os.unlink(aside)
        warnings.warn(f"took over the stale lock of {self.folder}: {_describe(owner)} no longer runs", stacklevel=3)

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self.held:
            self.held = False
            owner = self._read(self.path)
            if owner is not None and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
