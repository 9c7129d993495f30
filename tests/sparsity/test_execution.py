"""Sparse execution of Linear layers: the same forward and gradients as masked dense, and the same training."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from helpers import MLP, Module, trainer, two_round_run
from lottery import LotteryTicket
from lottery.sparsity import kernels
from lottery.sparsity.execution import apply_sparse, crossover, is_sparse, make_dense, make_sparse


@pytest.fixture(autouse=True, params=["c", "torch"])
def sparse_kernels(request):
    """Every test here on lottery's C kernels and on torch's."""
    if request.param == "c" and kernels.library() is None:
        pytest.skip("no C compiler here: lottery's kernels cannot be built")
    with kernels.using(request.param):
        yield request.param


def test_forward_and_gradients_equal_masked_dense():
    torch.manual_seed(0)
    layer, mask = nn.Linear(40, 24), torch.rand(24, 40) < 0.1
    with torch.no_grad():
        layer.weight.mul_(mask)
    ref = nn.Linear(40, 24)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(5, 3, 40, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    make_sparse(layer, mask)
    assert is_sparse(layer)
    (layer(x) ** 2).sum().backward()
    (ref(x_ref) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad * mask)  # pruned entries exactly zero
    assert not layer.weight.grad[~mask].any()
    torch.testing.assert_close(layer.bias.grad, ref.bias.grad)
    make_dense(layer)
    assert not is_sparse(layer) and "forward" not in layer.__dict__
    assert list(layer.state_dict()) == ["weight", "bias"]  # parameters and checkpoints unchanged


def test_an_empty_batch_gives_empty_outputs_and_gradients():
    layer, mask = nn.Linear(40, 24), torch.rand(24, 40) < 0.1
    make_sparse(layer, mask, sparse_grad=True)
    x = torch.randn(0, 40, requires_grad=True)
    layer(x).sum().backward()
    assert layer(x).shape == (0, 24) and x.grad.shape == (0, 40) and not layer.bias.grad.any()


def test_apply_sparse_chooses_by_density():
    model = MLP()
    masks = {"fc1.weight": torch.rand(32, 20) < 0.05, "fc2.weight": torch.ones(16, 32, dtype=torch.bool)}
    said = apply_sparse(model, masks, 0.5, batch=16)
    assert is_sparse(model.fc1) and not is_sparse(model.fc2) and not is_sparse(model.fc3)
    assert said["fc1.weight"].startswith("sparse (density") and said["fc2.weight"].startswith("dense (density 1.0000")



def test_crossover_is_measured_once_per_shape_batch_and_device(monkeypatch):
    from lottery.sparsity import execution

    pairs = []
    real = execution._pair
    monkeypatch.setattr(execution, "_pair", lambda *a: pairs.append(a) or real(*a))
    first = crossover((33, 21), 16, repeats=1)
    measured = len(pairs)
    assert measured >= 1 and first in (0.0, *execution.DENSITIES)
    assert crossover((33, 21), 16) == first and len(pairs) == measured  # read back, not measured again
    crossover((33, 21), 17, repeats=1)
    assert len(pairs) > measured  # another batch is another measurement


def test_crossover_times_the_path_a_run_takes(monkeypatch):
    """The sparse side as training runs it: the survivor-sized weight gradient a single-process run hands on (not a
    dense one scattered from it), and the layer's bias on both sides; apply_sparse asks for the layer's own."""
    from lottery.sparsity import execution
    from lottery.sparsity.execution import Pattern

    seen, kinds = [], set()
    real_pair, real_gradient = execution._pair, Pattern.gradient
    monkeypatch.setattr(execution, "_pair", lambda x, w, b, m, p, r: seen.append((b is not None, p.sparse_grad))
                        or real_pair(x, w, b, m, p, r))

    def gradient(self, values):
        grad = real_gradient(self, values)
        kinds.add(grad.is_sparse)
        return grad

    monkeypatch.setattr(Pattern, "gradient", gradient)
    crossover((12, 9), 5, repeats=1, sparse_grad=True, bias=True)
    assert seen and set(seen) == {(True, True)} and kinds == {True}
    seen.clear(), kinds.clear()
    crossover((12, 9), 5, repeats=1, sparse_grad=False, bias=False)
    assert seen and set(seen) == {(False, False)} and kinds == {False}
    asked = []
    monkeypatch.setattr(execution, "crossover", lambda *a, **k: asked.append(k) or 0.5)
    model = nn.Sequential(nn.Linear(9, 12, bias=False), nn.Linear(12, 4))
    apply_sparse(model, {"0.weight": torch.rand(12, 9) < 0.1, "1.weight": torch.rand(4, 12) < 0.1}, "auto", 5,
                 sparse_grad=True)
    assert [(k["bias"], k["sparse_grad"]) for k in asked] == [(False, True), (True, True)]


def test_crossover_takes_more_pairs_where_a_pair_is_short(monkeypatch):
    """15 pairs of a fast layer left its crossover to chance in 1 of 6 processes: short pairs are measured ~40 ms."""
    import time as clock

    from lottery.sparsity import execution

    for seconds, expected in ((0.0, execution.MAX_REPEATS), (0.01, 15)):
        asked = []

        def fake(x, weight, bias, mask, pattern, repeats, seconds=seconds):
            clock.sleep(seconds)
            if repeats == 1:  # the warm-up
                return 1.0, 1.0
            asked.append(repeats)
            return 1.0, 1.0

        monkeypatch.setattr(execution, "_pair", fake)
        monkeypatch.setattr(execution, "_CROSSOVER_CACHE", {})
        crossover((7, 9), 3)
        assert set(asked) == {expected}


def test_crossover_wants_a_win_measured_twice(monkeypatch):
    """One lucky sample must not decide a run's path: at 0.5 the sparse path wins the first measurement only; from
    0.2 down it wins every one. (The measurements themselves are faked here.)"""
    from lottery.sparsity import execution

    measured = []

    def fake(x, weight, bias, mask, pattern, repeats):
        if repeats == 1:  # the warm-up
            return 1.0, 1.0
        measured.append(round(pattern.density, 1))
        lucky = measured.count(0.5) == 1 and measured[-1] == 0.5
        return (1.0, 0.5) if lucky or pattern.density < 0.25 else (1.0, 1.0)

    monkeypatch.setattr(execution, "_pair", fake)
    assert crossover((40, 50), 7) == 0.2
    assert measured[:2] == [0.5, 0.5] and measured.count(0.2) == 2


def run(tmp_path, **kw):
    pl.seed_everything(0)  # before the module is made: its initial weights
    return two_round_run(tmp_path, Module(scheduler=None), **kw)


def test_training_on_sparse_kernels_matches_masked_dense_training(tmp_path, caplog):
    ref, ref_module = run(tmp_path / "dense")
    with caplog.at_level("INFO"):
        cb, module = run(tmp_path / "sparse", sparse_below=0.5)
    assert "net.fc1.weight: sparse (density 0.4578 < 0.5, sparse_below)" in caplog.text  # round 1 on
    assert f"(on {kernels.name()})" in caplog.text  # which kernels, said once with the layers
    assert is_sparse(module.net.fc1)
    for a, b in zip(ref.tickets, cb.tickets):
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)  # the same tickets
    for (n, a), b in zip(ref_module.state_dict().items(), module.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4), n  # summation order only


def test_bad_sparse_below_is_refused():
    with pytest.raises(ValueError, match="sparse_below=2"):
        LotteryTicket(sparse_below=2)


def test_a_resumed_sparse_run_is_bit_identical(tmp_path):
    from helpers import killed_and_resumed

    # killed in round 2, on sparse kernels since round 1
    ref, module = killed_and_resumed(tmp_path, lambda: Module(scheduler=None), 15, rounds=2, epochs_per_round=1,
                                     prune_fraction=0.6, sparse_below=0.5)
    assert is_sparse(module.net.fc2)
    for (n, a), b in zip(ref.state_dict().items(), module.state_dict().values()):
        assert torch.equal(a, b), n


def backward_twins(x, *pairs):
    """A fresh backward pass of each (model, optimizer) pair on the same batch."""
    for model, opt in pairs:
        opt.zero_grad()
        (model(x) ** 2).mean().backward()


def twin_layers(sparse_grad: bool = False):
    """A 10%-dense mask and two equal masked Linear layers: the second on the sparse path."""
    torch.manual_seed(0)
    mask = torch.rand(24, 40) < 0.1
    dense, sparse = nn.Linear(40, 24), nn.Linear(40, 24)
    with torch.no_grad():
        dense.weight.mul_(mask)
    sparse.load_state_dict(dense.state_dict())
    make_sparse(sparse, mask, sparse_grad=sparse_grad)
    return mask, dense, sparse


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.Adam(p, 1e-2), lambda p: torch.optim.AdamW(p, 1e-2),
                                      lambda p: torch.optim.SGD(p, 0.1, momentum=0.9, weight_decay=1e-3),
                                      lambda p: torch.optim.Adam(p, 1e-2, fused=True),
                                      lambda p: torch.optim.AdamW(p, 1e-2, weight_decay=0.1, fused=True)])
def test_the_survivors_step_is_the_masked_dense_step(make_opt, sparse_kernels):
    from lottery.sparsity import Masker
    from lottery.sparsity.execution import SurvivorsStep

    mask, dense, sparse = twin_layers()
    opt_d, opt_s = make_opt(dense.parameters()), make_opt(sparse.parameters())
    masker, step = Masker(dense, {"weight": mask}), SurvivorsStep(sparse, opt_s)
    for i in range(5):
        x = torch.randn(8, 40)
        backward_twins(x, (dense, opt_d), (sparse, opt_s))
        masker.zero_grads()
        opt_d.step()
        step.gather()
        # the first step makes the optimizer's full-sized state; from then on the update runs on the survivors alone
        # (fused optimizers: where lottery's C kernels gather and scatter them)
        fused = opt_s.param_groups[0]["fused"]
        compact = i > 0 and (not fused or sparse_kernels == "c")
        assert sparse.weight.numel() == (int(mask.sum()) if compact else mask.numel())
        opt_s.step()
        assert sparse.weight.shape == (24, 40)  # and they are put back
    torch.testing.assert_close(sparse.weight, dense.weight)
    torch.testing.assert_close(sparse.bias, dense.bias)
    assert not sparse.weight[~mask].any()
    moments = [k for k, v in opt_s.state[sparse.weight].items() if isinstance(v, torch.Tensor) and v.dim()]
    # on lottery's C kernels the state stays survivor-sized between steps; state_dict() (a checkpoint) and
    # expand() give it whole, equal to the masked dense run's
    for k in moments:
        held = opt_s.state[sparse.weight][k]
        assert held.numel() == (int(mask.sum()) if sparse_kernels == "c" else mask.numel()), k
    saved = opt_s.state_dict()["state"][0]
    step.expand()
    for k in moments:
        v = opt_s.state[sparse.weight][k]
        assert v.shape == (24, 40) and not v[~mask].any(), k
        assert torch.equal(saved[k], v), k
        torch.testing.assert_close(v, opt_d.state[dense.weight][k])


def test_the_weight_gradient_is_survivor_sized():
    """The sparse path's weight gradient holds the survivors only (no full-sized zeros written and scattered into):
    a sparse tensor equal to the masked dense gradient, in the pattern's row-major order."""
    torch.manual_seed(0)
    layer, mask = nn.Linear(40, 24), torch.rand(24, 40) < 0.1
    ref = nn.Linear(40, 24)
    with torch.no_grad():
        layer.weight.mul_(mask)
    ref.load_state_dict(layer.state_dict())
    make_sparse(layer, mask, sparse_grad=True)
    x = torch.randn(6, 40)
    (layer(x) ** 2).sum().backward()
    (ref(x) ** 2).sum().backward()
    grad = layer.weight.grad
    assert grad.is_sparse and grad._nnz() == int(mask.sum())
    torch.testing.assert_close(grad.to_dense(), ref.weight.grad * mask)
    torch.testing.assert_close(grad.coalesce().values(), ref.weight.grad[mask])  # row-major, as Pattern.flat


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.Adam(p, 1e-2), lambda p: torch.optim.LBFGS(p, 0.1),
                                      lambda p: torch.optim.Adam(p, 1e-2, fused=True)])
def test_survivor_sized_gradients_reach_any_optimizer_as_it_expects(make_opt, sparse_kernels):
    """An elementwise optimizer steps the survivors; any other gets the dense gradient back (LBFGS reads whole
    tensors), and so does a fused one on torch's kernels (its kernels cost no more over the pruned zeros than
    torch's gather and scatter).
    The masker leaves the survivor-sized gradient alone (its pruned entries are not stored)."""
    from lottery.sparsity import Masker
    from lottery.sparsity.execution import SurvivorsStep

    mask, dense, sparse = twin_layers(sparse_grad=True)
    opt_d, opt_s = make_opt(dense.parameters()), make_opt(sparse.parameters())
    masker_d, masker_s = Masker(dense, {"weight": mask}), Masker(sparse, {"weight": mask})
    step = SurvivorsStep(sparse, opt_s)
    for _ in range(3):
        x = torch.randn(8, 40)
        for model, opt, masker in ((dense, opt_d, masker_d), (sparse, opt_s, masker_s)):
            def closure(model=model, opt=opt, masker=masker):
                opt.zero_grad()
                loss = (model(x) ** 2).mean()
                loss.backward()
                masker.zero_grads()
                if model is sparse:
                    step.gather()
                return loss
            opt.step(closure)
    torch.testing.assert_close(sparse.weight, dense.weight)
    torch.testing.assert_close(sparse.bias, dense.bias)
    assert not sparse.weight[~mask].any()
    # the last step's gradient: survivor-sized where the step ran on survivors, dense where the optimizer read it
    fused = opt_s.param_groups[0].get("fused")
    assert step.compact == (type(opt_s) is torch.optim.Adam)
    assert sparse.weight.grad.is_sparse == (step.compact and (not fused or sparse_kernels == "c"))


def test_accumulated_sparse_gradients_train_as_masked_dense(tmp_path):
    """Two batches' survivor-sized gradients add up (accumulate_grad_batches) to the masked dense sum."""
    def fit(**kw):
        pl.seed_everything(0)
        cb = LotteryTicket(rounds=1, epochs_per_round=1, prune_fraction=0.6, dirpath=str(tmp_path / str(kw)), **kw)
        module = Module(scheduler=None)
        trainer(tmp_path / str(kw), [cb], accumulate_grad_batches=2).fit(module)
        return module

    ref, module = fit(), fit(sparse_below=0.5)
    assert is_sparse(module.net.fc1)
    for (n, a), b in zip(ref.state_dict().items(), module.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_sparse_execution_with_a_method_that_grows_weights_is_refused(method):
    """A grown weight's first step (RigL: its choice) reads the dense gradient, which the sparse path leaves out."""
    with pytest.raises(ValueError, match=f"sparse_below=0.5 with sparse_training='{method}'"):
        LotteryTicket(sparse_below=0.5, sparse_training=method, epochs_per_round=0, density=0.1)


def test_a_pruner_that_reads_gradients_scores_sparse_layers_as_dense_ones(tmp_path):
    """SNIP reads `.grad` as a weight-shaped tensor when it prunes round 2 of layers that run sparse since round 1:
    Plan.step gives it dense gradients, so the tickets are those of masked dense training."""
    ref, _ = run(tmp_path / "dense", pruner="snip")
    cb, module = run(tmp_path / "sparse", pruner="snip", sparse_below=0.5)
    assert is_sparse(module.net.fc1)
    for a, b in zip(ref.tickets, cb.tickets, strict=True):
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks), a.round


def test_the_survivors_step_keeps_the_values_the_forward_reads():
    """After a compacted step the forward reads the survivors' values the step left (no gather from the whole
    weight), and anything that then writes the weight (load_state_dict, a Masker, a step on the whole weight after
    the optimizer's state was cleared) is seen by the next forward."""
    from lottery.sparsity.execution import SurvivorsStep

    mask, dense, sparse = twin_layers(sparse_grad=True)
    opt_d, opt_s = (torch.optim.Adam(m.parameters(), 1e-2, fused=True) for m in (dense, sparse))
    step = SurvivorsStep(sparse, opt_s)
    pattern = sparse._lottery_pattern

    def train(steps):
        for _ in range(steps):
            x = torch.randn(8, 40)
            backward_twins(x, (dense, opt_d), (sparse, opt_s))
            dense.weight.grad.mul_(mask)
            opt_d.step()
            step.gather()
            opt_s.step()
        x = torch.randn(8, 40)
        torch.testing.assert_close(sparse(x), dense(x))

    train(3)
    if kernels.choice() == "c":  # compacted steps: the kept values are what the forward reads
        assert pattern.values_of(sparse.weight) is pattern.values
    new = {"weight": torch.randn(24, 40) * mask, "bias": torch.randn(24)}
    dense.load_state_dict(new)
    sparse.load_state_dict(new)
    train(1)
    with torch.no_grad():
        for m in (dense, sparse):
            m.weight.mul_(0.5)
    train(1)
    opt_d.state.clear()  # the next step makes the state anew, on the whole weight, unseen by its version counter
    opt_s.state.clear()
    train(2)


def test_optimizer_state_kept_through_a_round_change_is_that_of_masked_dense(tmp_path):
    """rewind="none" keeps the optimizer state across rounds, with the newly pruned entries zeroed; state held
    survivor-sized between steps goes back whole first, so those entries are zeroed too."""
    def fit(**kw):
        pl.seed_everything(0)
        cb = LotteryTicket(rounds=2, epochs_per_round=1, prune_fraction=0.6, rewind="none",
                           dirpath=str(tmp_path / str(kw) / "t"), **kw)
        module = Module(scheduler=None)
        t = trainer(tmp_path / str(kw), [cb], enable_checkpointing=False)  # a checkpoint's state_dict expands it
        t.fit(module)
        return module, t.optimizers[0].state_dict()["state"]

    (ref, ref_state), (module, state) = fit(), fit(sparse_below=0.5)
    assert is_sparse(module.net.fc1)
    for (n, a), b in zip(ref.state_dict().items(), module.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4), n
    for i in ref_state:
        for k, v in ref_state[i].items():
            torch.testing.assert_close(state[i][k], v, atol=1e-5, rtol=1e-4), (i, k)


def test_a_gather_whose_step_never_came_is_undone():
    """A GradScaler skips the optimizer step of a batch with inf gradients: the survivors gathered for it go back
    (by restore, which LotteryTicket calls at the next batch and validation, or by the next gather), with nothing
    written, and training goes on as masked dense."""
    from lottery.sparsity import Masker
    from lottery.sparsity.execution import SurvivorsStep

    mask, dense, sparse = twin_layers(sparse_grad=True)
    opt_d, opt_s = (torch.optim.Adam(m.parameters(), 1e-2) for m in (dense, sparse))
    masker, step = Masker(dense, {"weight": mask}), SurvivorsStep(sparse, opt_s)
    for i in range(6):
        x = torch.randn(8, 40)
        backward_twins(x, (dense, opt_d), (sparse, opt_s))
        masker.zero_grads()
        step.gather()
        if i in (2, 4):  # skipped on both; the next forward must see the whole weight
            if i == 2:
                step.restore()
            else:
                step.gather()  # gathering again first undoes the first
                step.restore()
            assert sparse.weight.shape == (24, 40) and sparse.weight.grad.shape == (24, 40)
            torch.testing.assert_close(sparse(x), dense(x))
            continue
        opt_d.step()
        opt_s.step()
    x = torch.randn(8, 40)
    torch.testing.assert_close(sparse(x), dense(x))
    torch.testing.assert_close(sparse.weight, dense.weight)
