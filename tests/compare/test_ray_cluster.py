"""`lottery compare` with `launcher: ray` on a two-node Ray cluster started on this host.

The head takes no tasks (num-cpus 0), so every cell runs on the second node, started in its own working directory
with its own temp dir and its own node folder (LOTTERY_NODE_DIR). The driver is `lottery compare` run in a third
directory with relative `base` and `out` paths, so a cell that read a driver path would find nothing on the node.
The nodes are stopped by signalling their own `ray start --block` processes: `ray stop` would stop every Ray
process of the host, other sessions' too.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from grid_helpers import ROOT, rows
from lottery import compare

ARGS = ["--ticket.rounds", "1", "--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "4",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
EXPERIMENTS = [{"name": "imp", "kind": "imp"}, {"name": "imp_shuffled", "kind": "shuffle"}]


def free_ports(n):
    """`n` distinct ports free now (two raylets on one host must not share any)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def node_options(ports):
    """A node's own ports (none of Ray's fixed defaults, which another Ray on this host may hold) and a small object
    store (the tickets are small; Ray's default is 30% of the memory per node)."""
    return ["--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
            "--dashboard-agent-listen-port", str(ports[2]), "--dashboard-agent-grpc-port", str(ports[3]),
            "--runtime-env-agent-port", str(ports[4]), "--metrics-export-port", str(ports[5]),
            "--object-store-memory", str(200 * 2**20)]


class Cluster:
    """A head node (no CPUs for tasks) and one worker node (`cpus`), each a `ray start --block` of its own."""

    def __init__(self, root, cpus, node_env):
        self.root, self.procs = root, []
        ray = str(Path(sys.executable).parent / "ray")
        # Ray 2.60 turns token authentication on when ~/.ray/auth_token exists; these nodes live for one test
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        ports = free_ports(14)
        self.address = f"127.0.0.1:{ports[12]}"
        self._start("head", [ray, "start", "--head", "--block", "--port", str(ports[12]), "--num-cpus", "0",
                             "--include-dashboard", "false", "--dashboard-port", str(ports[13]),
                             *node_options(ports[:6])], {})
        self._wait(lambda: self._listening(ports[12]), "the head's GCS port")
        self._start("node", [ray, "start", "--block", "--address", self.address, "--num-cpus", str(cpus),
                             *node_options(ports[6:12])], node_env)

    def _start(self, name, command, env):
        folder = self.root / name
        folder.mkdir()
        command += ["--temp-dir", str(folder / "ray")]  # each node its own temp dir (Ray 2.60 allows it per node)
        log = open(self.root / f"{name}.log", "w")
        # a session of its own: the fallback kill reaches this node's processes and no other
        self.procs.append(subprocess.Popen(command, cwd=folder, env={**self.env, **env}, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def _listening(self, port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def _wait(self, ready, what, timeout=60):
        end = time.monotonic() + timeout
        while not ready():
            dead = [p.args for p in self.procs if p.poll() is not None]
            assert not dead and time.monotonic() < end, f"{what} not up; logs in {self.root}"
            time.sleep(0.2)

    def logs(self):
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.root.glob("*.log")))

    def stop(self):
        """SIGTERM to each `ray start --block` (it drains its node and ends its children); SIGKILL to the
        sessions of those that do not end in time."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def cluster():
    pytest.importorskip("ray")
    # a short folder: Ray's socket paths under it must fit in 107 bytes (AF_UNIX), pytest's tmp_path may not
    root = Path(tempfile.mkdtemp(prefix="lray"))
    made = []

    def start(cpus, node_env):
        made.append(Cluster(root, cpus, node_env))
        return made[-1]

    try:
        yield start
    finally:
        for c in made:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)


def done_rows(folder):
    """The rows of a cell's done.json without timings."""
    done = json.loads((folder / "done.json").read_text())
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in done["rows"]]


def write_spec(folder, out, launcher):
    shutil.copy(ROOT / "configs" / "lenet300_fashion_imp.yaml", folder / "base.yaml")
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "out": out, "seeds": [0], "args": ARGS, "launcher": launcher,
                                    "experiments": EXPERIMENTS}))
    return path


def test_cells_on_another_node_give_the_local_launchers_results(tmp_path, cluster, fashion_mnist, monkeypatch):
    local = tmp_path / "local"
    local.mkdir()
    monkeypatch.chdir(local)  # the spec's relative paths
    expected = rows(compare.run(write_spec(local, "out", "local"), workers=1))

    scratch = tmp_path / "node_scratch"
    c = cluster(1, {"LOTTERY_NODE_DIR": str(scratch)})
    driver = tmp_path / "driver"
    driver.mkdir()
    spec = write_spec(driver, "out", "ray")
    env = {**c.env, "RAY_ADDRESS": c.address}
    command = [str(Path(sys.executable).parent / "lottery"), "compare", "--config", "spec.yaml"]
    done = subprocess.run(command, cwd=driver, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + c.logs()

    out = driver / "out"
    assert rows(out / "results.csv") == expected
    cells = sorted((out / "cells").iterdir())
    assert len(cells) == 2
    for folder in cells:
        mirror = local / "out" / "cells" / folder.name  # the same key: the cell is the same
        names = [sorted(p.name for p in (f / "tickets").iterdir()) for f in (folder, mirror)]
        assert names[0] == names[1]
        assert (folder / "tickets" / "rounds.csv").read_text() == (mirror / "tickets" / "rounds.csv").read_text()
        assert done_rows(folder) == done_rows(mirror)
        where = Path(json.loads((folder / "node.json").read_text())["folder"])
        assert where.is_relative_to(scratch), where  # trained on the worker node, in its own folder
        assert not list(folder.rglob("*.ckpt"))  # checkpoints stay on the node
    node_cwd = c.root / "node"
    assert sorted(p.name for p in node_cwd.iterdir()) == ["ray"]  # no driver path ('out', 'base.yaml') used there
    assert sorted((out / "executed.log").read_text().split()) == [f.name for f in cells]

    # a finished comparison run again trains nothing: its cells are read back on the driver
    again = subprocess.run(command, cwd=driver, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted((out / "executed.log").read_text().split()) == [f.name for f in cells]
    assert rows(out / "results.csv") == expected
