"""Read the records of an offline W&B run file (run-*.wandb) to check what a run wrote to disk."""

from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7  # ":W&B", magic 0xBEE1, version


def read_records(path: Path) -> list:
    """Every Record protobuf in a .wandb file (leveldb-log framing: crc, length, type; 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    chunks, partial, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
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
    records = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records
