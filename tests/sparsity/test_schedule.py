"""lottery.sparsity.schedule: kept_count, per_round_fraction, schedule objects (the first test also checks RewindPoint parsing)."""

import math
from dataclasses import dataclass

import pytest

from helpers import MLP

from lottery.callback import RewindPoint
from lottery.plan import Plan
from lottery.pruning import get
from lottery.sparsity import Geometric, kept_count, per_round_fraction


def test_schedule_values():
    assert RewindPoint.parse("init").kind == "init"
    assert RewindPoint.parse("none").kind == "none"
    assert RewindPoint.parse("1ep100it").step(50) == 150
    assert RewindPoint.parse("500it").step(50) == 500
    assert RewindPoint.parse("2ep").step(7) == 14
    assert str(RewindPoint.parse("1ep100it")) == "1ep100it"
    for bad in ["", "abc", "ep", "3x", "-1it", "1.5ep"]:
        with pytest.raises(ValueError, match="not understood"):
            RewindPoint.parse(bad)
    assert math.isclose(per_round_fraction(None, 0.01, 2), 0.9)
    assert kept_count(1000, 0.2, 3) == 512


@pytest.mark.parametrize("p,step", [(0.2, 0), (0.2, 3), (0.5, 7), (0.9, 1)])
def test_geometric_keeps_round_n_times_1_minus_p_to_the_step(p, step):
    assert Geometric(p).kept(1000, step) == kept_count(1000, p, step) == int(1000 * (1 - p) ** step + 0.5)


@dataclass(frozen=True)
class Linear:
    """Another schedule: survivors fall by a fixed share of the size per step."""

    share: float

    def kept(self, size, step):
        return max(0, size - round(size * self.share * step))


def test_a_schedule_object_replaces_the_prune_fraction():
    model = MLP()
    plan = Plan(model, Linear(0.25), "global")
    masks = plan.dense_masks(model)
    total = sum(plan.sizes.values())
    for step in (1, 2, 3):
        masks = plan.step(model, get("magnitude"), masks, step)
        assert sum(int(m.sum()) for m in masks.values()) == total - round(total * 0.25 * step)


def test_cubic_schedule_of_gradual_pruning():
    from lottery.sparsity.schedule import Cubic

    c = Cubic(final=0.1, updates=4)
    # sparsity s_k = s_f + (s_i - s_f)(1 - k/n)^3 with s_i = 0, s_f = 0.9
    assert [c.density(k) for k in range(6)] == pytest.approx(
        [1.0, 1 - 0.9 * (1 - 0.75 ** 3), 1 - 0.9 * (1 - 0.5 ** 3), 1 - 0.9 * (1 - 0.25 ** 3), 0.1, 0.1])
    assert c.kept(1000, 4) == 100 and c.kept(1000, 0) == 1000 and c.kept(1000, 2) == round(1000 * (1 - 0.9 * 0.875))
    assert Cubic(final=0.2, updates=2, initial=0.5).density(0) == pytest.approx(0.5)


def test_toward_reaches_its_exact_count_and_update_fractions():
    from lottery.sparsity.schedule import Constant, CosineDecay, Toward

    t = Toward(count=37, steps=3)
    assert [t.kept(1000, k) for k in range(5)] == [1000, round(1000 * 0.037 ** (1 / 3)), round(1000 * 0.037 ** (2 / 3)), 37, 37]
    assert Toward(0, 2).kept(10, 1) == 5 and Toward(0, 2).kept(10, 2) == 0
    assert Constant(0.3)(5, 100) == 0.3
    cos = CosineDecay(alpha=0.3, stop=0.75)  # (α/2)(1 + cos(π t / T_end)), T_end = 75 of 100 steps
    assert cos(0, 100) == pytest.approx(0.3) and cos(75, 100) == 0.0 and cos(90, 100) == 0.0
    assert cos(25, 100) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)))
