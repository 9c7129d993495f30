"""Layer densities (uniform, ER, ERK): closed form by hand, the dense cap, exact total counts."""

import math

import pytest

from lottery.sparsity.distribution import layer_counts, layer_densities, raw_density

LENET = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}


def test_erk_on_lenet300_by_hand():
    # ε·sum(shape) summed over layers = 0.1·N: ε = 26620 / 1594 = 16.70, so fc3 (raw 110/1000) would get 1.84 > 1
    # and is kept dense; solved again without it: ε = (26620 - 1000) / (1084 + 400)
    d = layer_densities(LENET, 0.1, "erk")
    eps = (0.1 * 266200 - 1000) / (1084 + 400)
    assert d["fc3.weight"] == 1.0
    assert d["fc2.weight"] == pytest.approx(eps * 400 / 30000)
    assert d["fc1.weight"] == pytest.approx(eps * 1084 / 235200)
    assert sum(d[n] * math.prod(s) for n, s in LENET.items()) == pytest.approx(0.1 * 266200)


def test_er_ignores_kernel_dimensions_and_erk_counts_them():
    conv = (64, 32, 3, 3)
    assert raw_density(conv, "er") == pytest.approx((64 + 32) / (64 * 32))
    assert raw_density(conv, "erk") == pytest.approx((64 + 32 + 3 + 3) / (64 * 32 * 9))
    assert raw_density(conv, "uniform") == 1.0
    d = layer_densities({"a": (64, 32, 3, 3), "b": (128, 64, 3, 3)}, 0.3, "uniform")
    assert d == {"a": pytest.approx(0.3), "b": pytest.approx(0.3)}


@pytest.mark.parametrize("kind", ["uniform", "er", "erk"])
@pytest.mark.parametrize("density", [0.5, 0.1, 0.036, 0.001])
def test_counts_are_exact_in_total_and_within_one_of_each_layers_share(kind, density):
    counts = layer_counts(LENET, density, kind)
    sizes = {n: math.prod(s) for n, s in LENET.items()}
    assert sum(counts.values()) == int(math.floor(density * sum(sizes.values()) + 0.5))
    for n, d in layer_densities(LENET, density, kind).items():
        assert abs(counts[n] - d * sizes[n]) < 1.0 and 0 <= counts[n] <= sizes[n]


def test_bad_distribution_and_density_are_refused():
    with pytest.raises(ValueError, match="unknown layer distribution 'erx'; choose one of uniform, er, erk"):
        layer_densities(LENET, 0.1, "erx")
    with pytest.raises(ValueError, match=r"density must be in \(0, 1\]"):
        layer_densities(LENET, 0.0, "erk")
