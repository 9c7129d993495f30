"""Speed fixes that must not change behaviour: the NVML probe variable and ClassificationModule's plain attributes."""

import os
import subprocess
import sys

import pytest
import torch

from lottery import nvml
from lottery.module import ClassificationModule


def test_importing_lottery_unsets_lightnings_nvml_variable_without_a_gpu():
    code = ("import os, pytorch_lightning; assert os.environ['PYTORCH_NVML_BASED_CUDA_CHECK'] == '1'; "
            "import lottery, torch; print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'), torch.cuda.device_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[1] == "0":
        assert out[0] == "None"  # no device: the per-step probe is gone
    else:
        assert out[0] == "1"  # a device: Lightning's fork-safe check stays


def test_nvml_variable_kept_when_a_device_exists(monkeypatch):
    monkeypatch.setenv(nvml.VARIABLE, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert nvml.skip_nvml_probe_without_gpu() is False
    assert os.environ[nvml.VARIABLE] == "1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert nvml.skip_nvml_probe_without_gpu() is True
    assert nvml.VARIABLE not in os.environ
    assert nvml.skip_nvml_probe_without_gpu() is False  # nothing left to do


def test_nvml_variable_untouched_by_a_cpu_only_torch(monkeypatch):
    monkeypatch.setenv(nvml.VARIABLE, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    assert nvml.skip_nvml_probe_without_gpu() is False
    assert os.environ[nvml.VARIABLE] == "1"


@pytest.mark.parametrize("name", sorted(ClassificationModule._PLAIN_ATTRIBUTES))
def test_plain_attributes_are_never_parameters_buffers_or_modules(name):
    module = ClassificationModule("lenet300")
    setattr(module, name, torch.ones(3))
    assert getattr(module, name).tolist() == [1.0, 1.0, 1.0]
    assert name not in dict(module.named_parameters()) and name not in dict(module.named_buffers())
    assert name not in module.state_dict() and name not in dict(module.named_modules())
    module.lr = 0.5  # any other name still goes through nn.Module
    module.extra = torch.nn.Linear(2, 2)
    assert "extra.weight" in module.state_dict()


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fused_optimizer_is_the_same_update(optimizer):
    import pytorch_lightning as pl

    def steps(fused: bool) -> tuple[torch.optim.Optimizer, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        module = ClassificationModule("lenet300", optimizer=optimizer, lr=0.01, weight_decay=1e-3, nesterov=optimizer == "sgd",
                                      fused=fused)
        module.trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False)
        opt = module.configure_optimizers()
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(x), y).backward()
            opt.step()
        return opt, {k: v.detach().clone() for k, v in module.state_dict().items()}

    fused_opt, fused = steps(True)
    plain_opt, plain = steps(False)
    assert fused_opt.param_groups[0]["fused"] is True and not plain_opt.param_groups[0]["fused"]
    for k in plain:
        torch.testing.assert_close(fused[k], plain[k], rtol=1e-5, atol=1e-6)


def test_unused_batch_hooks_are_switched_off_but_subclass_hooks_stay(tmp_path):
    from pytorch_lightning.trainer import call

    from lottery import LotteryTicket
    from tests.helpers import Module, trainer

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
