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
