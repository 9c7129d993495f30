"""lottery.callback under DDP: two CPU ranks end with identical masks and weights (ddp_run.py, beside this file)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.parametrize("mode,tickets", [("random", 3), ("snip", 1), ("set", 1), ("rigl", 1)])
def test_two_cpu_ranks_hold_identical_masks(tmp_path, mode, tickets):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "MASTER_PORT": str(29517 + len(mode))}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "ddp_run.py"), str(tmp_path), mode],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert len(r0["masks"]) == len(r1["masks"]) == tickets
    for m0, m1 in zip(r0["masks"], r1["masks"]):
        for n in m0:
            assert torch.equal(m0[n], m1[n])
    assert r0["masks"][-1]["net.fc1.weight"].float().mean() < 0.7  # pruning happened
    for n in r0["weights"]:
        assert torch.equal(r0["weights"][n], r1["weights"][n]), n
