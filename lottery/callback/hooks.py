"""Lightning hooks a callback or module does not use, switched off so that Lightning does not dispatch them every batch."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import Callback

# Batch-level hooks LotteryTicket never uses. Lightning dispatches every hook of every callback on every
# batch, each inside a profiler context (~5 us, 0.2% of a LeNet step each); it skips an attribute that is
# not callable, so they are set to None on the instance (benchmarks/masking_overhead.py).
UNUSED_BATCH_HOOKS = (
    "on_before_backward", "on_after_backward", "on_before_zero_grad", "on_train_batch_end",
    "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)
# The hooks Lightning calls at every training step, of every callback and of the module, also where they are
# Callback's and LightningModule's own, which are empty: for the callbacks of a `lottery fit` Trainer (progress bar,
# model summary, config, checkpoint) ~8 us a hook, 50 us a step, and 12 us for the module's: 4% of a LeNet-300-100
# step on CPU. (Evaluation batch hooks are called a few times an epoch, and Lightning reads the module's signatures.)
TRAIN_STEP_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad",
)


def switch_off(callback: Any, hooks: dict[str, type]) -> None:
    """Set each hook of `callback` to None where its class takes it unchanged from the class named for it.

    A subclass that defines one of these hooks itself keeps it.
    """
    for hook, owner in hooks.items():
        if getattr(type(callback), hook, None) is getattr(owner, hook):
            setattr(callback, hook, None)


def switch_off_empty(obj: Any, base: type = Callback) -> None:
    """Switch off the training-step hooks that `obj` (a callback, or a LightningModule with `base` LightningModule)
    takes unchanged from `base`, where they are empty; the ones its classes define are kept."""
    switch_off(obj, dict.fromkeys(TRAIN_STEP_HOOKS, base))
