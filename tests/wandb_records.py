"""Read the records of an offline W&B run file (run-*.wandb) to check what a run wrote to disk."""

from __future__ import annotations

import struct
import time
from pathlib import Path

BLOCK = 32768
HEADER = 7  # ":W&B", magic 0xBEE1, version


def read_records(path: Path, timeout: float = 30.0) -> list:
    """Every Record protobuf of a finished run's .wandb file, once its writer has written the run's exit record.

    `finish()` can return before W&B's writer process has flushed the file (seen: a file cut at one 32 KiB
    block with a record still pending), so the file is read again until it holds the exit record.
    """
    deadline = time.monotonic() + timeout
    while True:
        records, pending = _parse(Path(path).read_bytes(), path)
        if (not pending and any(r.WhichOneof("record_type") == "exit" for r in records)) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _parse(data: bytes, path: Path) -> tuple[list, bool]:
    """The records in `data` (leveldb-log framing: crc, length, type; 32 KiB blocks), and whether one is cut off."""
    from wandb.proto import wandb_internal_pb2 as pb

    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    chunks, partial, pos = [], None, HEADER
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # the writer has not finished this fragment
            return [], True
        body = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            chunks.append(body)
        elif kind == 2:
            partial = body
        elif kind == 3:
            partial += body
        elif kind == 4:
            chunks.append(partial + body)
            partial = None
    records = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records, partial is not None
