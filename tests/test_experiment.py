import errno
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint

from lottery import experiment
from lottery import resume as resuming
from lottery.cli import main
from lottery.experiment import LotteryCLI, build_cli

LOCK = ".lottery.lock"

CONFIG = str(Path(__file__).parents[1] / "configs" / "lenet300_fashion_imp.yaml")


def ticket_callback(cli):
    return next(c for c in cli.trainer.callbacks if type(c).__name__ == "LotteryTicket")


def test_an_amount_on_the_command_line_replaces_the_config_files_other_amount(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", CONFIG, "--ticket.density", "0.5", "--print_config"])
    ticket = yaml.safe_load(capsys.readouterr().out)["ticket"]
    assert ticket["density"] == 0.5 and ticket["prune_fraction"] is None
    cli = build_cli(["--config", CONFIG, "--ticket.density=0.5", f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert ticket_callback(cli).density == 0.5
    # the reverse: a config file with a density, a prune fraction on the command line
    config = yaml.safe_load(Path(CONFIG).read_text())
    config["ticket"] = {**config["ticket"], "prune_fraction": None, "density": 0.1}
    (tmp_path / "dense.yaml").write_text(yaml.safe_dump(config))
    cli = build_cli(["--config", str(tmp_path / "dense.yaml"), "--ticket.prune_fraction", "0.3",
                     f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert ticket_callback(cli).prune_fraction == 0.3 and ticket_callback(cli).density is None
    # only the command line's own amount is replaced; `null` given there replaces nothing
    assert experiment.one_amount(["--ticket.density", "null"]) == ["--ticket.density", "null"]
    assert experiment.one_amount(["--ticket.density", "0.1", "--ticket.prune_fraction", "0.2"])[-1] == "0.2"


def test_fit_checkpoints_at_every_epoch_end_unless_the_config_names_a_checkpoint(tmp_path):
    cli = build_cli(["--config", CONFIG, f"--trainer.default_root_dir={tmp_path}"], run=False)
    (checkpoint,) = cli.trainer.checkpoint_callbacks
    assert isinstance(checkpoint, resuming.Checkpoint)
    assert checkpoint._save_on_train_epoch_end is True and checkpoint.save_last == "link"
    # it saves no checkpoint at steps: Lightning does not call it at every step
    assert checkpoint.on_train_batch_end is None
    assert callable(resuming.Checkpoint(every_n_train_steps=5).on_train_batch_end)
    assert callable(resuming.Checkpoint(train_time_interval=timedelta(minutes=5)).on_train_batch_end)
    cli = build_cli(["--config", CONFIG, f"--trainer.default_root_dir={tmp_path}",
                     "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                     "--trainer.callbacks.monitor", "val_loss"], run=False)
    (checkpoint,) = cli.trainer.checkpoint_callbacks
    assert type(checkpoint) is ModelCheckpoint and checkpoint.monitor == "val_loss"


def test_fit_calls_no_empty_callback_hook_at_every_step(tmp_path):
    from lottery.callback.hooks import TRAIN_STEP_HOOKS

    cli = build_cli(["--config", CONFIG, f"--trainer.default_root_dir={tmp_path}"], run=False)
    called = {type(c).__name__: [h for h in TRAIN_STEP_HOOKS if callable(getattr(c, h))] for c in cli.trainer.callbacks}
    assert called == {"LotteryTicket": ["on_train_batch_start", "on_before_optimizer_step"], "RunConfig": [],
                      "TQDMProgressBar": ["on_train_batch_end"], "ModelSummary": [], "Checkpoint": []}


def test_a_checkpoint_every_n_steps_is_still_written(tmp_path):
    cli = build_cli(["--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--ticket.rounds", "1",
                     "--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "6",
                     "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                     "--trainer.callbacks+=lottery.resume.Checkpoint", "--trainer.callbacks.every_n_train_steps", "2",
                     "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.dirpath", str(tmp_path / "steps")],
                    run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert sorted(p.name for p in (tmp_path / "steps").glob("*.ckpt")) == [
        f"epoch={e}-step={s}.ckpt" for e, s in ((0, 2), (0, 4), (0, 6), (1, 10), (1, 12), (1, 8))]


def test_a_failed_checkpoint_write_names_the_file(tmp_path):
    def full(filepath, weights_only=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    path = str(tmp_path / "epoch=3-step=40.ckpt")
    with pytest.raises(OSError, match=f"could not write checkpoint {path}: No space left on device") as err:
        resuming.Checkpoint()._save_checkpoint(SimpleNamespace(save_checkpoint=full), path)
    assert err.value.errno == errno.ENOSPC


def checkpoint_file(path: Path, mtime: float, complete: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "weights": torch.zeros(1000)}, path)
    if not complete:
        path.write_bytes(path.read_bytes()[:300])
    import os

    os.utime(path, (mtime, mtime))
    return path


def test_the_newest_complete_checkpoint_is_picked_and_truncated_ones_named(tmp_path):
    old = checkpoint_file(tmp_path / "epoch=0-step=8.ckpt", 100)
    newer = checkpoint_file(tmp_path / "epoch=1-step=16.ckpt", 200)
    cut = checkpoint_file(tmp_path / "epoch=2-step=24.ckpt", 300, complete=False)
    with pytest.warns(UserWarning, match=f"skipping checkpoint {cut}: not a complete zip archive"):
        assert resuming.newest_checkpoint(tmp_path.glob("*.ckpt")) == newer
    last = checkpoint_file(tmp_path / "last.ckpt", 50)  # last.ckpt wins over mtimes
    assert resuming.newest_checkpoint([old, newer, last]) == last
    with pytest.warns(UserWarning):
        assert resuming.newest_checkpoint([cut]) is None


def test_run_versions_sort_as_numbers(tmp_path):
    for name in ("version_9", "version_10", "version_2", "version_x", "other"):
        (tmp_path / name).mkdir()
    assert [p.name for p in resuming.versions(tmp_path)] == ["version_10", "version_9", "version_2"]


def resume(tmp_path, monkeypatch, *extra):
    """The LotteryCLI of `lottery fit --resume` in `tmp_path`, stopped before training."""
    monkeypatch.setattr(LotteryCLI, "_run_subcommand", lambda self, subcommand: None)
    return build_cli(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--resume", *extra])


def test_resume_continues_the_newest_run_holding_a_checkpoint_in_its_own_folder(tmp_path, monkeypatch):
    logs = tmp_path / "lightning_logs"
    checkpoint_file(logs / "version_2" / "checkpoints" / "last.ckpt", 300)
    newest = checkpoint_file(logs / "version_10" / "checkpoints" / "epoch=4-step=40.ckpt", 200)
    (logs / "version_11").mkdir()  # started, killed before its first checkpoint
    with pytest.warns(UserWarning, match="config.yaml is missing"):
        cli = resume(tmp_path, monkeypatch)
    assert cli.config_init.fit.ckpt_path == str(newest)
    assert cli.trainer.logger.version == 10 and cli.trainer.log_dir == str(logs / "version_10")
    assert not (tmp_path / LOCK).exists()  # released at the end


def test_resume_refuses_changed_settings_listing_them(tmp_path, capsys):
    folder = tmp_path / "lightning_logs" / "version_0"
    checkpoint_file(folder / "checkpoints" / "last.ckpt", 100)
    with pytest.raises(SystemExit):  # the resolved config, as the run saved it
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--print_config"])
    (folder / "config.yaml").write_text(capsys.readouterr().out)
    with pytest.raises(SystemExit) as refused:
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--resume", "--ticket.density",
              "0.1", "--model.lr", "0.1", "--trainer.max_epochs", "4"])
    message = str(refused.value)
    assert "ticket.density: None -> 0.1" in message and "ticket.prune_fraction: 0.2 -> None" in message
    assert "model.lr: 0.0012 -> 0.1" in message and "max_epochs" not in message
    assert not (tmp_path / LOCK).exists()


def test_setting_changes_split_refused_and_allowed():
    saved = {"trainer": {"max_epochs": 3, "limit_train_batches": None}, "model": {"lr": 0.1},
             "data": {"init_args": {"data_dir": "a", "seed": 0}}, "ckpt_path": None, "seed_everything": 0}
    now = {"trainer": {"max_epochs": 5, "limit_train_batches": 8}, "model": {"lr": 0.1},
           "data": {"init_args": {"data_dir": "b", "seed": 1}}, "ckpt_path": "x.ckpt", "seed_everything": 0,
           "resume": True}
    refused, allowed = resuming.setting_changes(saved, now)
    assert refused == ["data.init_args.seed: 0 -> 1", "trainer.limit_train_batches: None -> 8"]
    assert allowed == ["data.init_args.data_dir: 'a' -> 'b'", "trainer.max_epochs: 3 -> 5"]


def test_resume_without_a_checkpoint_says_what_to_do(tmp_path):
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    with pytest.raises(SystemExit, match="--resume found no checkpoint to continue: none of the 1 run folders .*"
                                         "Start the run anew without --resume"):
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--resume"])
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    with pytest.raises(SystemExit, match="not both"):
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--resume", "--ckpt_path", "x"])
    with pytest.raises(SystemExit, match="--ckpt_path last .* would start over from epoch 0; .* with --resume instead"):
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--ckpt_path", "last"])
    with pytest.raises(SystemExit, match="--resume_with_changes goes with --resume"):
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--resume_with_changes"])
    assert not (tmp_path / LOCK).exists()


def test_resume_reads_a_config_saved_before_models_were_named_by_class_path(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "lightning_logs" / "version_0"
    checkpoint_file(folder / "checkpoints" / "last.ckpt", 100)
    with pytest.raises(SystemExit):
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--print_config"])
    saved = yaml.safe_load(capsys.readouterr().out)
    assert saved["model"]["class_path"] == "lottery.module.ClassificationModule"
    # the earlier form: the model's arguments straight under model:, the sizes the data set left out
    saved["model"] = {k: v for k, v in saved["model"]["init_args"].items() if k not in ("num_classes", "input_shape")}
    (folder / "config.yaml").write_text(yaml.safe_dump(saved))
    cli = resume(tmp_path, monkeypatch)  # same settings: continues
    assert cli.config_init.fit.ckpt_path == str(folder / "checkpoints" / "last.ckpt")
    with pytest.raises(SystemExit, match=r"model.lr: 0.0012 -> 0.1"):
        main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}", "--resume", "--model.lr", "0.1"])


def test_a_run_of_your_own_module_resumes_and_refuses_its_changed_arguments(tmp_path, monkeypatch, capsys):
    own = ["--model", "user_code.TinyModule", "--data", "user_code.TinyData", "--seed_everything", "0",
           f"--trainer.default_root_dir={tmp_path}"]
    folder = tmp_path / "lightning_logs" / "version_0"
    checkpoint_file(folder / "checkpoints" / "last.ckpt", 100)
    with pytest.raises(SystemExit):
        main(["fit", *own, "--print_config"])
    (folder / "config.yaml").write_text(capsys.readouterr().out)
    monkeypatch.setattr(LotteryCLI, "_run_subcommand", lambda self, subcommand: None)
    assert type(build_cli(["fit", *own, "--resume"]).model).__name__ == "TinyModule"
    with pytest.raises(SystemExit, match=r"model.init_args.hidden: 16 -> 4"):
        main(["fit", *own, "--resume", "--model.hidden", "4"])
