import errno
import os
import zipfile

import pytest
import torch

from lottery import files
from lottery.files import atomic_write_bytes


def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    path = tmp_path / "tickets" / "round_03.safetensors"
    atomic_write_bytes(path, b"old")

    class Full:
        """An open file on a full disk: every write fails with ENOSPC."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(fdopen(fd, mode)))
    with pytest.raises(OSError, match=f"could not write {path}: No space left on device") as err:
        atomic_write_bytes(path, b"new" * 100_000)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == b"old" and sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_truncated_checkpoint_is_not_a_complete_zip(tmp_path):
    path = tmp_path / "epoch=0-step=8.ckpt"
    torch.save({"state_dict": {"w": torch.arange(10_000.0)}}, path)
    assert files.zip_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "not a complete zip archive" in files.zip_problem(path)
    path.write_bytes(b"")
    assert files.zip_problem(path) is not None
    with zipfile.ZipFile(path.with_name("crc.ckpt"), "w") as z:
        z.writestr("a/data/0", b"x" * 100)
    raw = bytearray(path.with_name("crc.ckpt").read_bytes())
    raw[raw.index(b"x" * 100)] = ord("y")  # a flipped byte inside a member
    path.write_bytes(bytes(raw))
    assert files.zip_problem(path) == "member a/data/0 fails its CRC check"
