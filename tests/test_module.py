"""lottery.module: ClassificationModule's plain attributes and fused optimizers."""

import pytest
import torch

from lottery.module import ClassificationModule


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


def test_empty_training_step_hooks_are_not_called_and_defined_ones_are():
    import inspect

    import pytorch_lightning as pl

    from lottery.callback.hooks import TRAIN_STEP_HOOKS

    module = ClassificationModule("lenet300")
    assert all(getattr(module, hook) is None for hook in TRAIN_STEP_HOOKS)  # Lightning skips what is not callable
    # evaluation batch hooks stay: Lightning reads their signatures when a validation has two loaders
    assert callable(module.on_validation_batch_start) and callable(module.on_test_batch_end)

    class Counting(ClassificationModule):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.ends = getattr(self, "ends", 0) + 1

    counting = Counting("lenet300")
    assert callable(counting.on_train_batch_end) and counting.on_before_backward is None
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(counting, torch.utils.data.DataLoader(data, batch_size=4))
    assert counting.ends == 2
    # Lightning inspects the steps' signatures at every step; they are computed once, and are the functions' own
    for name in ("training_step", "validation_step", "test_step"):
        step = getattr(ClassificationModule, name)
        assert step.__dict__["__signature__"] == inspect.signature(step, follow_wrapped=False)
        assert inspect.getfullargspec(getattr(module, name)).args[:3] == ["self", "batch", "batch_idx"]
