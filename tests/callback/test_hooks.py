"""lottery.callback.hooks: empty Lightning hooks switched off, defined ones kept."""

from pytorch_lightning.callbacks import Callback, TQDMProgressBar

from lottery.callback.hooks import TRAIN_STEP_HOOKS, switch_off_empty


def test_empty_training_step_hooks_of_a_callback_are_switched_off():
    class Mine(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            pass

    mine, bar = Mine(), TQDMProgressBar(refresh_rate=20)
    switch_off_empty(mine)
    switch_off_empty(bar)
    assert callable(mine.on_train_batch_start)
    assert all(getattr(mine, hook) is None for hook in TRAIN_STEP_HOOKS if hook != "on_train_batch_start")
    assert callable(bar.on_train_batch_end) and bar.on_before_backward is None and bar.on_train_batch_start is None
    assert callable(mine.on_validation_batch_end)  # evaluation hooks are left as they are
