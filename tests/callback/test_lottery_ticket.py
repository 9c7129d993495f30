"""lottery.callback.lottery_ticket: LotteryTicket's IMP rounds, rewinding, masks, outputs, argument checks and hooks."""

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers import Kill, Module, trainer
from lottery import LotteryTicket, Ticket

E, S = 3, 6  # epochs per round, steps per epoch (96 examples, batch 16)


def fit(tmp_path, rounds=2, scheduler="step", seed=0, **kw):
    pl.seed_everything(seed)
    module = Module(scheduler=scheduler)
    module.record = True
    cb = LotteryTicket(rounds=rounds, epochs_per_round=E, **kw)
    t = trainer(tmp_path, [cb])
    t.fit(module)
    return module, cb, t


@pytest.mark.parametrize("scheduler", ["step", "iter"])
@pytest.mark.parametrize("rewind,k,later", [("init", 0, E), ("4it", 4, E), ("1ep", S, E - 1), ("1ep2it", S + 2, E - 1)])
def test_rounds_start_from_the_rewind_point(tmp_path, rewind, k, later, scheduler):
    module, cb, t = fit(tmp_path, rewind=rewind, scheduler=scheduler)
    trace = module.trace
    assert [s for s, _, _ in trace] == list(range(len(trace)))  # one entry per optimizer step
    assert len(trace) == E * S + 2 * later * S
    assert t.current_epoch == E + 2 * later
    _, lr_k, w_k = trace[k]
    for r in (1, 2):
        start = E * S + (r - 1) * later * S
        masks = cb.tickets[r].masks
        _, lr, w = trace[start]
        assert lr == pytest.approx(lr_k, rel=1e-12)  # schedule position of the rewind point
        for n, value in w.items():
            key = f"net.{n}"
            expected = w_k[n] * masks[key] if key in masks else w_k[n]
            assert torch.equal(value, expected), (r, n)
        for _, _, wi in trace[start : start + later * S]:
            for key, m in masks.items():
                assert not wi[key[len("net.") :]][~m].any()  # pruned weights are exactly zero at every step


def test_densities_masks_nesting_and_outputs(tmp_path):
    module, cb, t = fit(tmp_path, rounds=3, scope="layerwise", fractions={"net.fc3.weight": 0.1})
    assert [tk.round for tk in cb.tickets] == [0, 1, 2, 3]
    sizes = {"net.fc1.weight": 640, "net.fc2.weight": 512, "net.fc3.weight": 64}
    for r, tk in enumerate(cb.tickets):
        for n, m in tk.masks.items():
            p = 0.1 if n == "net.fc3.weight" else 0.2
            assert abs(int(m.sum()) - sizes[n] * (1 - p) ** r) <= 0.5 + 1e-9
    for a, b in zip(cb.tickets, cb.tickets[1:]):
        for n in a.masks:
            assert not (b.masks[n] & ~a.masks[n]).any()
    folder = t.log_dir + "/tickets"
    rows = list(csv.DictReader(open(folder + "/rounds.csv")))
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[3]["density"]) == pytest.approx(cb.tickets[3].density, abs=1e-6)
    assert all(float(r["best_val_loss"]) > 0 and int(r["best_step"]) > 0 for r in rows)
    for r in range(4):
        loaded = Ticket.load(f"{folder}/round_{r:02d}.safetensors")
        assert loaded.density == pytest.approx(cb.tickets[r].density)
        assert loaded.metadata["rewind"] == "init" and loaded.metadata["pruner"] == "magnitude"
    logged = list(csv.DictReader(open(t.log_dir + "/metrics.csv")))
    records = [r for r in logged if r.get("lottery/density")]  # one row per closed round
    assert [float(r["lottery/round"]) for r in records] == [0, 1, 2, 3]
    assert [float(r["lottery/density"]) for r in records] == pytest.approx([tk.density for tk in cb.tickets])
    assert all(r.get("lottery/best_val_loss") for r in records)
    # every epoch row (validation and training) carries its round and the step within the round
    steps = t.num_training_batches
    epochs = [r for r in logged if r.get("epoch") and not r.get("lottery/density") and (int(r["step"]) + 1) % steps == 0]
    missing = [r for r in epochs if not (r.get("lottery/round") and r.get("lottery/round_step"))]
    assert len(epochs) == 2 * 4 * E and not missing, missing  # a validation row and a training row per epoch
    assert {(int(r["epoch"]), float(r["lottery/round"])) for r in epochs} == {(e, float(e // E)) for e in range(4 * E)}
    assert all(float(r["lottery/round_step"]) == (int(r["epoch"]) % E + 1) * steps for r in epochs)


def test_no_reparametrization_and_optimizer_state_stays_zero(tmp_path):
    pl.seed_everything(0)
    module = Module(scheduler=None)
    keys = set(module.state_dict())
    cb = LotteryTicket(rounds=2, epochs_per_round=2, optimizer_state="rewind", rewind="2it")
    trainer(tmp_path, [cb]).fit(module)
    assert set(module.state_dict()) == keys
    assert not any(m._forward_pre_hooks for m in module.modules())
    opt = module.trainer.optimizers[0]
    for n, p in module.named_parameters():
        if n in cb.tickets[-1].masks:
            pruned = ~cb.tickets[-1].masks[n]
            assert pruned.any()
            assert not p[pruned].any()
            assert not opt.state[p]["momentum_buffer"][pruned].any()


def resumable_run(tmp_path, kill_step=None, resume=False):
    pl.seed_everything(0)
    module = Module(scheduler="step")
    module.record = True
    cb = LotteryTicket(rounds=2, epochs_per_round=E, rewind="1ep", optimizer_state="rewind")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    callbacks = [cb, ckpt] + ([Kill(kill_step)] if kill_step is not None else [])
    t = trainer(tmp_path, callbacks)
    t.fit(module, ckpt_path="last" if resume else None)
    return module, cb


@pytest.mark.parametrize("kill_step", [E * S + S + 3, E * S])  # inside round 1; right after the round-0 boundary
def test_kill_and_resume_gives_identical_tickets(tmp_path, kill_step):
    ref_module, ref = resumable_run(tmp_path / "ref")
    with pytest.raises(SystemExit):  # Lightning turns the interrupt into a graceful exit
        resumable_run(tmp_path / "run", kill_step=kill_step)
    module, cb = resumable_run(tmp_path / "run", resume=True)
    resumed_at = module.trace[0][0]
    assert resumed_at == (kill_step // S) * S  # restarted from the last epoch-end checkpoint, not from scratch
    assert len(cb.tickets) == len(ref.tickets) == 3
    for a, b in zip(ref.tickets, cb.tickets):
        assert a.metadata["round"] == b.metadata["round"]
        for n in a.masks:
            assert torch.equal(a.masks[n], b.masks[n])
    for (n, a), (_, b) in zip(ref_module.state_dict().items(), module.state_dict().items()):
        assert torch.equal(a, b), n
    assert any((tmp_path / "run").glob("**/round_02.safetensors"))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"prune_fraction": 1.0}, "prune_fraction must be strictly between 0 and 1"),
        ({"prune_fraction": 0.0}, "prune_fraction must be strictly between 0 and 1"),
        ({"density": 1.5}, "density must be strictly between 0 and 1"),
        ({"density": 0.1, "prune_fraction": 0.2}, "not both"),
        ({"fractions": {"fc3.weight": 2}}, r"fractions\['fc3.weight'\] must be"),
        ({"rewind": "3x"}, "not understood"),
        ({"rewind": "5ep", "epochs_per_round": 3}, "beyond the round length"),
        ({"rewind": "3ep", "epochs_per_round": 3}, "beyond the round length"),
        ({"pruner": "nope"}, "unknown pruner 'nope'; registered pruners: force, grasp, grasp_abs, iter_snip, magnitude, random, snip, synflow"),
        ({"scope": "local"}, "scope='local' is not allowed"),
        ({"rounds": 0}, "rounds must be a positive integer"),
        ({"optimizer_state": "keep"}, "optimizer_state='keep' is not allowed"),
    ],
)
def test_arguments_are_validated_in_init(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LotteryTicket(**kwargs)


@pytest.mark.parametrize(
    "kwargs,net,match",
    [
        ({"exclude": ["net.fc9.*"]}, None, "exclude pattern 'net.fc9.\\*' matches no prunable parameter"),
        ({"fractions": {"fc3.weight": 0.1}}, None, "fractions pattern 'fc3.weight' matches no prunable parameter"),
        ({}, torch.nn.Sequential(torch.nn.BatchNorm1d(20)), "nothing to prune"),
        ({"rewind": "40it"}, None, "round 0 has only 18 steps"),
    ],
)
def test_model_dependent_errors_come_before_training(tmp_path, kwargs, net, match):
    module = Module(net=net)
    module.record = True
    cb = LotteryTicket(rounds=1, epochs_per_round=E, **kwargs)
    with pytest.raises(ValueError, match=match):
        trainer(tmp_path, [cb]).fit(module)
    assert module.trace == []


def test_rewind_none_keeps_training_from_trained_weights(tmp_path):
    module, cb, t = fit(tmp_path, rounds=1, rewind="none", scheduler=None)
    trace = module.trace
    start = E * S
    masks = cb.tickets[1].masks
    # the first step of round 1 sees the trained weights of round 0 (one step further), masked
    for key, m in masks.items():
        w = trace[start][2][key[4:]]
        assert not w[~m].any()
        assert not torch.equal(w[m], trace[0][2][key[4:]][m])  # not rewound to init
    assert torch.equal(cb.tickets[1].weights["net.fc1.weight"] * masks["net.fc1.weight"], trace[start][2]["fc1.weight"])


def test_random_pruner_is_reproducible_with_a_seed(tmp_path):
    _, a, _ = fit(tmp_path / "a", rounds=2, pruner="random", seed=3)
    _, b, _ = fit(tmp_path / "b", rounds=2, pruner="random", seed=3)
    _, c, _ = fit(tmp_path / "c", rounds=2, pruner="random", seed=4)
    assert all(torch.equal(a.tickets[2].masks[n], b.tickets[2].masks[n]) for n in a.tickets[2].masks)
    assert not all(torch.equal(a.tickets[2].masks[n], c.tickets[2].masks[n]) for n in a.tickets[2].masks)


class Drift(torch.optim.SGD):
    """An optimizer that moves every weight, gradient or not: only re-masking keeps pruned ones at zero."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(1e-3)
        return loss


@pytest.mark.parametrize("opt", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Drift", "SGD-fused", "Adam-fused",
                                 "AdamW-fused"])
def test_pruned_weights_stay_zero_under_each_optimizer(tmp_path, opt):
    from lottery.sparsity import preserves_zeros

    class WithOpt(Module):
        def configure_optimizers(self):
            name, fused = opt.split("-")[0], opt.endswith("-fused")  # fused kernels: ClassificationModule's default
            kw = {"weight_decay": 0.1, **({"fused": True} if fused else {})}
            if name in ("SGD", "RMSprop", "Drift"):
                kw["momentum"] = 0.9
            if name == "SGD" and fused:
                kw["nesterov"] = True
            cls = Drift if name == "Drift" else getattr(torch.optim, name)
            return cls(self.parameters(), lr=0.05, **kw)

    pl.seed_everything(0)
    module = WithOpt()
    module.record = True
    cb = LotteryTicket(rounds=2, epochs_per_round=2, prune_fraction=0.5)
    trainer(tmp_path, [cb]).fit(module)
    # Drift is not in the zero-preserving list: it relies on the re-mask after each step
    assert preserves_zeros(module.trainer.optimizers[0]) == (opt != "Drift")
    for r in (1, 2):
        masks = cb.tickets[r].masks
        start = 2 * S * r
        for _, _, w in module.trace[start + 1 : start + 2 * S]:
            for key, m in masks.items():
                assert torch.equal(w[key[4:]][~m], torch.zeros(int((~m).sum())))


@pytest.mark.parametrize("pruner", ["snip", "synflow"])
def test_imp_rounds_with_a_pruner_that_reads_the_train_data(tmp_path, pruner):
    # SNIP scores on labelled batches; SynFlow reads its input shape there (Module has no example_input_array)
    module, cb, t = fit(tmp_path, rounds=2, scheduler=None, pruner=pruner)
    assert [tk.round for tk in cb.tickets] == [0, 1, 2]
    total = 640 + 512 + 64
    for r, tk in enumerate(cb.tickets):
        assert abs(tk.density * total - total * 0.8 ** r) <= 1
    assert cb.tickets[2].metadata["pruner"] == pruner


def test_unused_batch_hooks_are_switched_off_but_subclass_hooks_stay(tmp_path):
    from pytorch_lightning.trainer import call

    class Counting(LotteryTicket):
        calls = 0

        def on_train_batch_end(self, *args):  # a subclass's own hook must still run
            Counting.calls += 1

    imp = LotteryTicket(rounds=1, epochs_per_round=1, dirpath=str(tmp_path / "a"))
    assert imp.on_before_backward is None and imp.on_after_backward is None and imp.on_train_batch_end is None
    assert callable(imp.on_train_batch_start) and callable(imp.on_before_optimizer_step)  # snapshot, masking
    at_init = Counting(pruner="random", density=0.5, rounds=1, epochs_per_round=0, dirpath=str(tmp_path / "b"))
    assert at_init.on_train_batch_start is None and callable(at_init.on_train_batch_end)
    seen = []
    original = call._call_callback_hooks

    def spy(trainer_, hook_name, *args, **kwargs):
        seen.extend(hook_name for cb in trainer_.callbacks if cb is at_init and callable(getattr(cb, hook_name)))
        return original(trainer_, hook_name, *args, **kwargs)

    call._call_callback_hooks = spy
    try:
        trainer(tmp_path, [at_init], max_epochs=1).fit(Module(n=64))
    finally:
        call._call_callback_hooks = original
    assert Counting.calls == 4  # 64 examples in batches of 16
    assert seen.count("on_before_optimizer_step") == 4 and "on_before_backward" not in seen
    assert len(at_init.tickets) == 1 and at_init.tickets[-1].density == pytest.approx(0.5, abs=0.01)
