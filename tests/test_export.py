"""Tickets as inference models: CSR and compact exports match the masked dense model; refusals say what to do."""

import copy

import pytest
import torch
from torch import nn

from helpers import MLP
from lottery import prune
from lottery.export import CSRLinear, export


def masked(model, masks):
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for n, p in out.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return out


@pytest.fixture
def ticket_and_model():
    torch.manual_seed(0)
    model = MLP((20, 64, 32, 4))
    return prune(model, "magnitude", density=0.05, rounds=1, scope="layerwise"), model


def test_csr_layers_hold_only_the_survivors_and_match_the_masked_model(ticket_and_model):
    ticket, model = ticket_and_model
    exported = export(model, ticket, to="csr")
    x = torch.randn(7, 3, 20)  # any leading dimensions
    torch.testing.assert_close(exported(x), masked(model, ticket.masks)(x), atol=1e-5, rtol=1e-5)
    for name in ("fc1", "fc2", "fc3"):
        layer = getattr(exported, name)
        assert isinstance(layer, CSRLinear) and layer.weight._nnz() == int(ticket.masks[f"{name}.weight"].sum())
    assert isinstance(model.fc1, nn.Linear)  # the given model is left as it was


def test_compact_removes_disconnected_neurons_and_folds_constant_ones():
    torch.manual_seed(0)
    model = MLP((6, 5, 4, 2))
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    masks["fc1.weight"][1] = False  # hidden neuron 1 gets no input: outputs relu(bias), folded into fc2's bias
    masks["fc2.weight"][:, 3] = False  # hidden neuron 3 of fc1 feeds nothing: unused
    masks["fc2.weight"][2] = False  # fc2's neuron 2: no input
    masks["fc3.weight"][:, 0] = False  # fc2's neuron 0: feeds nothing
    exported = export(model, masks, to="compact")
    assert (exported.fc1.out_features, exported.fc2.in_features, exported.fc2.out_features, exported.fc3.in_features) \
        == (3, 3, 2, 2)
    assert exported.compact_removed == 4
    x = torch.randn(10, 6)
    torch.testing.assert_close(exported(x), masked(model, masks)(x))


def test_refusals_say_what_to_do(ticket_and_model):
    ticket, model = ticket_and_model
    with pytest.raises(ValueError, match="unknown export format 'onnx'; choose one of csr, semi-structured, compact"):
        export(model, ticket, to="onnx")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs CUDA.*Export to='csr'"):
            export(model, ticket, to="semi-structured")
    with pytest.raises(KeyError, match="does not have"):
        export(nn.Sequential(nn.Linear(20, 4)), ticket)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x  # data-dependent control flow: fx cannot trace it

    with pytest.raises(ValueError, match="cannot trace Branchy.*to='csr'"):
        export(Branchy(), {"fc.weight": torch.ones(4, 4, dtype=torch.bool)}, to="compact")
