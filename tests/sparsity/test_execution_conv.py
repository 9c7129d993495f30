"""Sparse execution of Conv2d layers: the same forward and gradients as masked dense, the same training, and when a
conv runs sparse (a number, or "auto" decided at its first forward with gradients)."""

import copy

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from helpers import Module, two_round_run
from lottery.sparsity import Masker, kernels
from lottery.sparsity import execution
from lottery.sparsity.execution import (SurvivorsStep, apply_sparse, crossing, decisions, is_sparse, make_dense,
                                        make_sparse)

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="no C compiler here: a conv's sparse path needs "
                                "lottery's C kernels")

GEOMETRIES = [  # in, out, kernel, stride, padding, dilation, input H x W (stride 1: on padded planes; else by rows)
    (3, 8, 3, 1, 1, 1, (9, 11)),
    (3, 4, (3, 2), 1, (2, 1), (2, 1), (10, 9)),
    (2, 3, 3, 1, 0, 1, (5, 6)),
    (4, 5, (3, 2), (2, 1), (1, 0), (1, 2), (12, 13)),
    (2, 3, 5, 3, 2, 1, (17, 16)),
    (6, 7, 1, 1, 0, 1, (8, 8)),
]


def masked_conv(geometry, density=0.3, bias=True, seed=0):
    torch.manual_seed(seed)
    c, o, k, s, p, d, _ = geometry
    conv = nn.Conv2d(c, o, k, s, p, d, bias=bias)
    mask = torch.rand(conv.weight.shape) < density
    with torch.no_grad():
        conv.weight.mul_(mask)
    return conv, mask


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_forward_and_gradients_equal_masked_dense(geometry):
    layer, mask = masked_conv(geometry)
    ref = nn.Conv2d(*geometry[:6])
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(3, geometry[0], *geometry[6], requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    make_sparse(layer, mask, sparse_grad=True)  # a conv's weight gradient stays dense whatever is asked
    assert is_sparse(layer)
    y = layer(x)
    torch.testing.assert_close(y, ref(x_ref))
    (y ** 2).sum().backward()
    (ref(x_ref) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    assert not layer.weight.grad.is_sparse and layer.weight.grad.shape == layer.weight.shape
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad * mask, atol=1e-5, rtol=1e-5)
    assert not layer.weight.grad[~mask].any()  # pruned entries exactly zero
    torch.testing.assert_close(layer.bias.grad, ref.bias.grad)
    torch.testing.assert_close(layer(x[0].detach()), ref(x[0].detach()))  # unbatched
    make_dense(layer)
    assert not is_sparse(layer) and list(layer.state_dict()) == ["weight", "bias"]


def test_conv_training_steps_equal_masked_dense_and_keep_pruned_weights_zero():
    """Several Adam steps (state on survivors, SurvivorsStep and Masker as the callback runs them)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 6, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 4 * 4, 10))
    masks = {n: torch.rand(p.shape) < 0.3 for n, p in model.named_parameters() if p.dim() > 1}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    ref = copy.deepcopy(model)
    said = apply_sparse(model, masks, 0.5, 4, sparse_grad=True)
    assert all(said[n].startswith("sparse (density") for n in ("0.weight", "2.weight"))
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    for m in (ref, model):
        opt = torch.optim.Adam(m.parameters(), 1e-2)
        masker, survivors = Masker(m, masks), SurvivorsStep(m, opt)
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            masker.zero_grads()
            survivors.gather()
            opt.step()
        survivors.expand()
    for (n, a), b in zip(ref.named_parameters(), model.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5), n
        if n in masks:
            assert not b[~masks[n]].any()


def test_a_conv_the_kernels_cannot_run_stays_dense_and_says_why():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3, padding="same"),
                          nn.Conv2d(4, 4, 3, padding_mode="reflect", padding=1))
    masks = {f"{i}.weight": torch.rand(model[i].weight.shape) < 0.1 for i in range(3)}
    said = apply_sparse(model, masks, 0.5, 8)
    assert not any(is_sparse(m) for m in model)
    assert "groups=2" in said["0.weight"] and "padding='same'" in said["1.weight"]
    assert "padding_mode='reflect'" in said["2.weight"]
    with kernels.using("torch"):  # no C kernels: convs stay dense, said so
        said = apply_sparse(nn.Sequential(nn.Conv2d(4, 4, 3)), {"0.weight": masks["0.weight"]}, 0.5, 8)
    assert said["0.weight"].startswith("dense (a conv's sparse path runs on lottery's C kernels")
    with pytest.raises(ValueError, match="groups=2"):
        make_sparse(model[0], masks["0.weight"])
    other = nn.Sequential(nn.Conv1d(4, 4, 3), nn.Embedding(10, 4))
    said = apply_sparse(other, {"0.weight": torch.rand(4, 4, 3) < 0.1, "1.weight": torch.rand(10, 4) < 0.1}, 0.5, 8)
    assert said == {n: "dense (only the weights of Linear and Conv2d layers have a sparse path)"
                    for n in ("0.weight", "1.weight")}


def test_a_float64_conv_made_sparse_computes_as_torch_does():
    layer, mask = masked_conv(GEOMETRIES[0])
    make_sparse(layer, mask)
    layer.double()  # after it was made sparse: lottery's kernels read float32 only
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    torch.testing.assert_close(layer(x), nn.Conv2d.forward(layer, x))
    with pytest.raises(RuntimeError, match="type"):  # torch's own refusal, not float64 read as float32
        layer(x.float())


def test_auto_conv_decides_at_its_first_forward_with_gradients(monkeypatch):
    asked = []
    monkeypatch.setattr(execution, "conv_crossover",
                        lambda conv, size, batch, device, input_grad: asked.append((size, batch, input_grad)) or 0.3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
    masks = {"0.weight": torch.rand(8, 3, 3, 3) < 0.1, "2.weight": torch.rand(4, 8, 3, 3) < 0.45}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    said = apply_sparse(model, masks, "auto", 60)
    assert said["0.weight"].startswith("decides at its first forward") and not asked
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():  # e.g. validation first: nothing decided
        model(x)
    assert not asked and decisions(model) == {}
    reference = nn.functional.conv2d(nn.functional.relu(model[0]._conv_forward(x, model[0].weight, model[0].bias)),
                                     model[2].weight, model[2].bias, padding=1)
    torch.testing.assert_close(model(x), reference)  # the deciding call computes too
    assert asked == [((3, 6, 7), 60, False), ((8, 6, 7), 60, True)]  # the input's size, and whether it has a gradient
    decided = decisions(model)
    assert decided["0.weight"] == "sparse (density %.4f < 0.3, auto crossover at input [3, 6, 7])" % masks[
        "0.weight"].float().mean()
    assert decided["2.weight"].startswith("dense (density") and decisions(model) == {}  # said once
    assert is_sparse(model[0]) and not is_sparse(model[2])
    said = apply_sparse(model, masks, "auto", 60)  # the next round: the input size is known, decided at once
    assert said["0.weight"].startswith("sparse (density") and len(asked) == 4


def test_the_conv_crossover_is_where_the_measured_line_crosses():
    densities, times = (0.02, 0.2, 0.5), (1.0, 5.0, 11.0)
    assert crossing(8.0, densities, times) == pytest.approx(0.35)  # on the second segment: 0.2 + 3 * 0.3 / 6
    assert crossing(3.0, densities, times) == pytest.approx(0.11)  # on the first: 0.02 + 2 * 0.18 / 4
    assert crossing(1.0, densities, times) == 0.0  # the sparsest already slower
    assert crossing(20.0, densities, times) == 0.5  # faster everywhere measured: no more is claimed
    conv = nn.Conv2d(2, 3, 3, padding=1)
    found = execution.conv_crossover(conv, (2, 5, 5), 4, repeats=1)
    assert 0.0 <= found <= 0.5 and execution.conv_crossover(conv, (2, 5, 5), 4) == found  # measured once, cached
    assert execution.conv_crossover(conv, (2, 5, 5), 4, device="meta") == 0.0  # no C kernel there: never timed


class ConvModule(Module):
    """The test Module's data as 1x4x5 images through two convs."""

    def __init__(self, **kw):
        net = nn.Sequential(nn.Unflatten(1, (1, 4, 5)), nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(80, 4))
        super().__init__(net=net, scheduler=None, **kw)


def run(tmp_path, **kw):
    pl.seed_everything(0)  # before the module is made: its initial weights
    return two_round_run(tmp_path, ConvModule(), **kw)


def test_training_convs_on_sparse_kernels_matches_masked_dense_training(tmp_path, caplog):
    ref, ref_module = run(tmp_path / "dense")
    with caplog.at_level("INFO"):
        cb, module = run(tmp_path / "sparse", sparse_below=0.5)
    assert "net.3.weight: sparse (density 0.4259 < 0.5, sparse_below)" in caplog.text
    assert not is_sparse(module.net[1]) and is_sparse(module.net[3])  # 0.70 and 0.20 in round 2
    for a, b in zip(ref.tickets, cb.tickets):
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    for (n, a), b in zip(ref_module.state_dict().items(), module.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4), n


def test_auto_convs_are_logged_once_decided(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(execution, "conv_crossover", lambda *a: 1.0)
    with caplog.at_level("INFO"):
        run(tmp_path, sparse_below="auto")
    assert "net.1.weight: decides at its first forward" in caplog.text
    assert "net.3.weight: sparse (density 0.4259 < 1, auto crossover at input [6, 4, 5])" in caplog.text
    assert "net.1.weight: dense (density 0.7593 >= 0.5, the densest a conv's crossover measures)" in caplog.text


def test_a_resumed_run_with_sparse_convs_is_bit_identical(tmp_path):
    from helpers import killed_and_resumed

    # killed in round 2, its second conv sparse since round 1
    ref, module = killed_and_resumed(tmp_path, ConvModule, 15, rounds=2, epochs_per_round=1, prune_fraction=0.6,
                                     sparse_below=0.5)
    assert is_sparse(module.net[3])
    for (n, a), b in zip(ref.state_dict().items(), module.state_dict().values()):
        assert torch.equal(a, b), n


def test_a_refused_conv_under_auto_is_said_at_once_and_large_inputs_are_timed_few_at_a_time(monkeypatch):
    said = apply_sparse(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), {"0.weight": torch.rand(4, 2, 3, 3) < 0.1},
                        "auto", 8)
    assert said["0.weight"].startswith("dense (groups=2")  # no forward to wait for
    monkeypatch.setattr(execution, "CONV_ELEMENTS", 2 * 5 * 5 * 3)  # room for 3 inputs of [2, 5, 5]
    execution.conv_crossover(nn.Conv2d(2, 3, 3, padding=1), (2, 5, 5), 60, repeats=1)
    batches = {key[6] for key in execution._CROSSOVER_CACHE if key[0] == "conv" and key[5] == (2, 5, 5)}
    assert 3 in batches


class LateConvModule(ConvModule):
    """Its second conv takes part from the third step on (a branch the first forwards do not take)."""

    def forward(self, x):
        net = self.net
        h = net[2](net[1](net[0](x)))
        if self.training and self.global_step < 2:
            return net[6](net[5](torch.cat([h, h[:, :2]], 1)[:, :4]))  # 4 channels, as the second conv gives
        return net[6](net[5](net[4](net[3](h))))


def test_a_conv_no_forward_reached_yet_is_logged_once_it_decides(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(execution, "conv_crossover", lambda *a: 1.0)
    pl.seed_everything(0)
    with caplog.at_level("INFO"):
        two_round_run(tmp_path, LateConvModule(), sparse_below="auto")
    assert "net.3.weight: dense (density 1.0000 >= 0.5, the densest a conv's crossover measures)" in caplog.text
