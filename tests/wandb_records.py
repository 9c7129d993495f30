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


def offline_wandb(monkeypatch, tmp_path: Path) -> None:
    """Offline W&B with every file of it under `tmp_path` (runs, artifact staging and cache)."""
    for name, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"), ("WANDB_DIR", tmp_path),
                        ("WANDB_CACHE_DIR", tmp_path / "wandb-cache"), ("WANDB_DATA_DIR", tmp_path / "wandb-data"),
                        ("WANDB_CONFIG_DIR", tmp_path / "wandb-config")):
        monkeypatch.setenv(name, str(value))


class OfflineRun:
    """What an offline run wrote (its run-*.wandb records), decoded: the run record, config, metric axes, history
    rows, artifacts it logged or used, and its exit code."""

    def __init__(self, folder: Path) -> None:
        import json

        self.folder = Path(folder)
        self.records = read_records(next(self.folder.glob("run-*.wandb")))
        by_kind: dict[str, list] = {}
        for r in self.records:
            by_kind.setdefault(r.WhichOneof("record_type"), []).append(r)
        self.run = by_kind["run"][0].run
        self.name, self.group, self.job_type, self.id = (self.run.display_name, self.run.run_group, self.run.job_type,
                                                         self.run.run_id)
        self.config: dict = {}
        for update in [self.run.config, *(r.config for r in by_kind.get("config", []))]:
            for item in update.update:
                key = item.key or ".".join(item.nested_key)
                self.config[key] = json.loads(item.value_json)
        self.axis = {r.metric.name: r.metric.step_metric for r in by_kind.get("metric", []) if r.metric.name}
        self.globs = {r.metric.glob_name: r.metric.step_metric for r in by_kind.get("metric", []) if r.metric.glob_name}
        # a scalar is one item; a table, chart or image nested items under its name: {field: value}
        self.history = []
        for h in by_kind.get("history", []):
            row: dict = {}
            for i in h.history.item:
                value = json.loads(i.value_json) if i.value_json else None
                if i.key or len(i.nested_key) == 1:
                    row[i.key or i.nested_key[0]] = value
                else:
                    row.setdefault(i.nested_key[0], {})[".".join(i.nested_key[1:])] = value
            self.history.append(row)
        self.artifacts = [r.artifact for r in by_kind.get("artifact", [])]
        self.exit_code = by_kind["exit"][0].exit.exit_code if "exit" in by_kind else None

    def logged(self, type: str = "ticket") -> list:
        """The artifacts of `type` this run produced (not those it declared as used)."""
        return [a for a in self.artifacts if a.type == type and not a.use_after_commit]

    def used(self, type: str = "ticket") -> list:
        """The artifacts of `type` this run declared as its input."""
        return [a for a in self.artifacts if a.type == type and a.use_after_commit]

    def __repr__(self) -> str:
        return f"OfflineRun({self.name!r}, group={self.group!r}, job_type={self.job_type!r})"


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run below `root`, in the order they started."""
    found = [OfflineRun(f) for f in Path(root).glob("**/wandb/offline-run-*")]
    return sorted(found, key=lambda r: (r.run.start_time.seconds, r.run.start_time.nanos))
