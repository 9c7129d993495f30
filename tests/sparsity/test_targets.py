"""lottery.sparsity.targets: which parameters are prunable, and the errors of patterns that match none."""

import pytest
from torch import nn

from helpers import SmallCNN
from lottery import sparsity as sel
from lottery.plan import Plan


def test_prunable_defaults_and_errors():
    cnn = SmallCNN()
    assert sel.prunable(cnn) == ["conv.weight", "fc.weight"]
    assert sel.prunable(cnn, exclude=["fc.*"]) == ["conv.weight"]
    with pytest.raises(ValueError, match="matches no prunable parameter"):
        sel.prunable(cnn, exclude=["nothing*"])
    with pytest.raises(ValueError, match="nothing to prune"):
        sel.prunable(nn.Sequential(nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="excludes every"):
        sel.prunable(cnn, exclude=["*"])
    with pytest.raises(ValueError, match="fractions pattern"):
        Plan(cnn, 0.2, "global", {"fc9.weight": 0.1})


def test_include_adds_any_float_parameter_and_exclude_still_removes():
    from helpers import MLP

    mlp = MLP()
    assert sel.prunable(mlp, include=["fc1.bias"]) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc3.weight"]
    assert sel.prunable(mlp, include=["fc1.bias"], exclude=["fc1.*"]) == ["fc2.weight", "fc3.weight"]
    assert sel.prunable(SmallCNN(), include=["bn.*"]) == ["conv.weight", "bn.weight", "bn.bias", "fc.weight"]
    assert sel.prunable(mlp, include=["fc*.weight"]) == sel.default_prunable(mlp)  # already prunable: no change
    with pytest.raises(ValueError, match=r"include pattern 'fc9\*' matches no floating-point parameter\. "
                                         r"Floating-point parameters: fc1.weight, fc1.bias, .*fc3.bias$"):
        sel.prunable(mlp, include=["fc9*"])


def test_a_linear_tied_to_an_earlier_parameter_is_prunable_under_its_first_name():
    emb, dec = nn.Embedding(7, 4), nn.Linear(4, 7, bias=False)
    dec.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "dec": dec})  # the Linear's weight is listed as emb.weight
    assert [n for n, _ in model.named_parameters()] == ["emb.weight"]
    assert sel.prunable(model) == ["emb.weight"]
    assert sel.aliases(model) == {"dec.weight": "emb.weight"}
