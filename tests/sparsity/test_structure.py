"""N:M structured masks: the block rule by hand, exact N:M for every pruner, IMP rounds below N/M, bad shapes."""

import pytest
import pytorch_lightning as pl
import torch

from helpers import MLP, Module, trainer
from lottery import LotteryTicket, prune
from lottery.plan import Plan
from lottery.pruning import get
from lottery.sparsity.structure import NM


def blocks(mask, m=4):
    return mask.reshape(-1, m).sum(1)


def test_the_n_best_survivors_of_every_block_by_hand():
    nm = NM.parse("2:4")
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5, 3.0, 2.0, 1.0, 0.0]])
    everything = torch.ones(1, 8, dtype=torch.bool)
    assert nm.candidates(scores, everything).tolist() == [[False, True, True, False, True, True, False, False]]
    some = torch.tensor([[True, False, True, True, False, False, False, True]])  # the survivors so far
    assert nm.candidates(scores, some).tolist() == [[False, False, True, True, False, False, False, True]]
    assert NM.parse("1:8").density == 0.125 and str(NM.parse(" 2 : 4 ")) == "2:4"
    for bad in ("4:2", "2-4", "0:4", "2:2"):
        with pytest.raises(ValueError, match="N:M with 0 < N < M"):
            NM.parse(bad)


@pytest.mark.parametrize("pruner", ["magnitude", "random", "snip", "synflow", "force"])
def test_every_pruner_gives_an_exact_two_four_mask_at_half_density(pruner):
    torch.manual_seed(0)
    model = MLP()
    model.example_input_array = torch.randn(2, 20)
    batches = [(torch.randn(16, 20), torch.randint(0, 4, (16,)))]
    ticket = prune(model, pruner, density=0.5, rounds=2, batches=batches, structure="2:4")
    for n, m in ticket.masks.items():
        assert bool((blocks(m) == 2).all()), n
    assert ticket.metadata["structure"] == "2:4"


def test_rounds_below_n_over_m_keep_fewer_by_score_within_the_blocks():
    torch.manual_seed(0)
    model = MLP()
    plan = Plan(model, 0.2, "layerwise", structure="2:4")
    masks = plan.dense_masks(model)
    history = []
    for r in range(1, 6):
        masks = plan.step(model, get("magnitude"), masks, r)
        history.append(masks)
        for n, m in masks.items():
            # the schedule's count, capped at the N:M capacity: 0.8^r above 1/2 -> exactly half
            assert int(m.sum()) == min(round(m.numel() * 0.8 ** r), m.numel() // 2), (r, n)
            assert int(blocks(m).max()) <= 2
    for a, b in zip(history, history[1:]):
        assert all(not (b[n] & ~a[n]).any() for n in a)  # masks only shrink


def test_a_layer_whose_inputs_do_not_split_into_blocks_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"0.weight has 6 inputs per output .* not a multiple of 4.*exclude="):
        Plan(model, 0.2, structure="2:4")
    Plan(model, 0.2, structure="2:4", exclude=["0.weight"])  # left out, the rest is fine


def test_imp_with_structure_in_the_callback(tmp_path, caplog):
    pl.seed_everything(0)
    cb = LotteryTicket(rounds=2, epochs_per_round=1, prune_fraction=0.5, structure="2:4", dirpath=str(tmp_path / "t"))
    with caplog.at_level("INFO"):
        trainer(tmp_path, [cb]).fit(Module(scheduler=None))
    first, second = cb.tickets[1].masks, cb.tickets[2].masks
    assert all(bool((blocks(m) == 2).all()) for m in first.values())  # round 1: exactly 2:4
    assert all(int(blocks(m).max()) <= 2 for m in second.values()) and cb.tickets[2].density < 0.5
    assert cb.tickets[1].metadata["structure"] == "2:4"
    assert "2:4 kernels need a weight of rows a multiple of 32" in caplog.text  # the small test layers: said
    with pytest.raises(ValueError, match="dynamic sparse training grows weights anywhere"):
        LotteryTicket(sparse_training="rigl", density=0.1, epochs_per_round=0, structure="2:4")


def test_gradual_pruning_with_structure(tmp_path):
    from lottery.sparse_training import Gradual

    pl.seed_everything(0)
    cb = LotteryTicket(sparse_training=Gradual(every=2), density=0.3, epochs_per_round=0, scope="layerwise",
                       structure="2:4", dirpath=str(tmp_path / "t"))
    trainer(tmp_path, [cb], max_epochs=3).fit(Module(scheduler=None))
    masks = cb.tickets[-1].masks
    assert all(int(blocks(m).max()) <= 2 for m in masks.values())
    assert all(int(m.sum()) == round(0.3 * m.numel()) for m in masks.values())
