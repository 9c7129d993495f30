"""Lightning hooks a callback does not use, switched off so that Lightning does not dispatch them every batch."""

from __future__ import annotations

from pytorch_lightning.callbacks import Callback

# Batch-level hooks LotteryTicket never uses. Lightning dispatches every hook of every callback on every
# batch, each inside a profiler context (~5 us, 0.2% of a LeNet step each); it skips an attribute that is
# not callable, so they are set to None on the instance (benchmarks/masking_overhead.py).
UNUSED_BATCH_HOOKS = (
    "on_before_backward", "on_after_backward", "on_before_zero_grad", "on_train_batch_end",
    "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)


def switch_off(callback: Callback, hooks: dict[str, type]) -> None:
    """Set each hook of `callback` to None where its class takes it unchanged from the class named for it.

    A subclass that defines one of these hooks itself keeps it.
    """
    for hook, owner in hooks.items():
        if getattr(type(callback), hook) is getattr(owner, hook):
            setattr(callback, hook, None)
