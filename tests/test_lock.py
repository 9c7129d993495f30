import json
import socket
import subprocess
import sys

import pytest

from lottery.lock import LOCK, RunLock, RunLockedError, is_rank_zero


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_second_writer_is_refused_naming_the_folder_and_the_owner(tmp_path):
    with RunLock(tmp_path, "lottery compare") as lock:
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] > 0 and owner["host"] == socket.gethostname()
        with pytest.raises(RunLockedError, match=f"{tmp_path} is in use by lottery compare \\(pid {owner['pid']} on "
                                                 f"host {socket.gethostname()}, since .*wait for it to finish"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK).exists()


def test_the_lock_is_removed_when_the_work_raises(tmp_path):
    with pytest.raises(KeyError):
        with RunLock(tmp_path / "new"):
            raise KeyError("boom")
    assert not (tmp_path / "new" / LOCK).exists()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path):
    pid = dead_pid()
    (tmp_path / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": "lottery fit"}))
    with pytest.warns(UserWarning, match=f"took over the stale lock of {tmp_path}: lottery fit \\(pid {pid}"):
        lock = RunLock(tmp_path).acquire()
    assert lock.held and json.loads(lock.path.read_text())["pid"] != pid
    lock.release()
    assert not list(tmp_path.iterdir())  # nothing left aside


def test_a_lock_of_a_reused_pid_is_stale(tmp_path):
    # the owner's pid now belongs to a process started later (this one): the recorded start time differs
    import os

    (tmp_path / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "1"}))
    with pytest.warns(UserWarning, match="stale lock"):
        RunLock(tmp_path).acquire().release()


def test_a_lock_held_on_another_host_is_refused_with_what_to_do(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "lottery fit"}))
    with pytest.raises(RunLockedError, match=f"on another host: .* if it does not, delete {tmp_path / LOCK}"):
        RunLock(tmp_path).acquire()


def test_only_rank_zero_locks(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert is_rank_zero()
    monkeypatch.setenv("RANK", "0")
    assert is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_rank_zero()
