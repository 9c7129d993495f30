"""lottery.pruning.batches: (inputs, labels) batches, batches passed as given for a loss_fn, per_class."""

import pytest
import torch

from lottery.pruning.batches import take, to_device


def test_take_reads_inputs_and_labels_of_tuples_and_lists():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    out = take([(x, y, "extra"), [x + 1, y]], count=2)
    assert len(out) == 2 and all(isinstance(b, tuple) and len(b) == 2 for b in out)
    assert torch.equal(out[0][0], x) and torch.equal(out[1][0], x + 1) and torch.equal(out[1][1], y)
    assert len(take([(x, y)] * 5, count=3)) == 3


def test_take_refuses_other_batches_without_a_loss_fn():
    with pytest.raises(ValueError, match=r"SNIP scores on \(inputs, labels\) batches.*pass loss_fn="):
        take([{"x": torch.zeros(2, 3), "y": torch.zeros(2)}], count=1, who="SNIP")


def test_batches_as_given_keep_their_structure_and_move_every_tensor():
    batch = {"ids": torch.ones(2, 5, dtype=torch.long), "extra": [torch.zeros(2), (torch.zeros(1), 3)], "tag": "a"}
    (out,) = take([batch, batch], count=1, device=torch.device("meta"), as_given=True)
    assert out.keys() == batch.keys() and out["tag"] == "a" and out["extra"][1][1] == 3
    assert isinstance(out["extra"], list) and isinstance(out["extra"][1], tuple)
    assert out["ids"].is_meta and out["extra"][0].is_meta and out["extra"][1][0].is_meta
    assert out["ids"].dtype == torch.long and batch["ids"].device.type == "cpu"  # the given batch is untouched
    assert to_device(batch, None) is batch


def test_per_class_needs_inputs_and_labels():
    x, y = torch.arange(8.0).view(8, 1), torch.tensor([0, 1, 1, 0, 2, 2, 1, 0])
    ((xs, ys),) = take([(x, y)], per_class=2, as_given=True)
    assert ys.tolist() == [0, 0, 1, 1, 2, 2] and xs.flatten().tolist() == [0, 3, 1, 2, 4, 5]
    with pytest.raises(ValueError, match=r"per_class= needs \(inputs, labels\) batches; pass batches= instead"):
        take([{"x": x, "y": y}], per_class=2, as_given=True)
