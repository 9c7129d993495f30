"""lottery.rng: seeded."""

import pytest
import torch


def test_seeded_leaves_cuda_generators_alone_when_cuda_is_unused(monkeypatch):
    from lottery.rng import seeded

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        pytest.skip("CUDA is in use in this process: seeded seeds and restores its generators")
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    before = torch.get_rng_state()
    with seeded(7):
        a = torch.rand(3)
    with seeded(7):
        assert torch.equal(torch.rand(3), a)
    assert torch.equal(torch.get_rng_state(), before) and calls == []  # no CUDA seeding queued for later
