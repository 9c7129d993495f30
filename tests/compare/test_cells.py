import inspect
from pathlib import Path

import pytest
import yaml

from grid_helpers import ROOT
from lottery import LotteryTicket, compare
from lottery.sanity import VARIANTS
from lottery.sparse_training import METHODS


def test_experiments_can_pick_imp_rounds(tmp_path):
    folder = tmp_path / "imp"
    folder.mkdir()
    (folder / "rounds.csv").write_text("round,density\n0,1.0\n1,0.8\n2,0.64\n3,0.512\n")
    spec = compare.Spec(base=str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), seeds=[0], experiments=[
        {"name": "imp", "kind": "imp"}, {"name": "synflow", "kind": "pai", "pruner": "synflow", "rounds": [1, 3]}])
    cells = compare.phase_two(spec, {("imp", 0): folder})
    densities = [c.args[c.args.index("--ticket.density") + 1] for c in cells]
    assert densities == ["0.8", "0.512"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), "experiments": [
        {"name": "imp", "kind": "imp"}, {"name": "s", "kind": "pai", "pruner": "snip", "rounds": [0]}]}))
    with pytest.raises(ValueError, match="rounds must be a list of IMP rounds >= 1"):
        compare.Spec.load(bad)


def test_cells_keep_their_identity_across_comments(spec, tmp_path):
    path = spec("keys")
    s = compare.Spec.load(path)
    cell = compare.phase_one(s)[0]
    commented = tmp_path / "commented.yaml"
    commented.write_text("# a new comment\n" + Path(s.base).read_text().replace("\n", "  # note\n", 1))
    assert cell.key(str(commented), s.out) == cell.key(s.base, s.out)  # comments and layout do not count


def grid_of_every_kind(tmp_path, args=()):
    """A spec with an experiment of every kind and the IMP results folder of its seeds (rounds 0-2)."""
    folder = tmp_path / "imp"
    folder.mkdir()
    (folder / "rounds.csv").write_text("round,density\n0,1.0\n1,0.8\n2,0.64\n")
    experiments = [{"name": "imp", "kind": "imp"}, {"name": "random", "kind": "pai", "pruner": "random"},
                   *({"name": f"imp_{v}", "kind": v} for v in VARIANTS), *({"name": m, "kind": m} for m in METHODS)]
    spec = compare.Spec(base=str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), seeds=[0, 1],
                        experiments=experiments, out=str(tmp_path / "out"), args=list(args))
    return spec, {("imp", 0): folder, ("imp", 1): folder}


def test_cell_arguments_name_only_callback_parameters(tmp_path):
    spec, imp = grid_of_every_kind(tmp_path, ["--ticket.epochs_per_round", "3"])
    # every sparse-training method and every registered sanity variant is a kind
    assert set(compare.KINDS) == {"imp", "pai", *METHODS, *VARIANTS}
    cells = [*compare.phase_one(spec), *compare.phase_two(spec, imp)]
    assert {c.kind for c in cells} == set(compare.KINDS)
    parameters = set(inspect.signature(LotteryTicket.__init__).parameters) - {"self"}
    for cell in cells:
        args = compare.fit_args(spec.base, tmp_path / "cell", cell, spec.args)
        flags = [a for a in args if a.startswith("--ticket.")]
        assert "--ticket.dirpath" in flags
        assert {f.split(".", 1)[1] for f in flags} <= parameters, flags
    sanity = [c for c in cells if c.kind in VARIANTS]
    assert all(c.args[c.args.index("--ticket.from_ticket") + 1] == c.source for c in sanity)
    assert sanity[0].source == str(tmp_path / "imp" / "round_01.safetensors")
    assert all(c.args[c.args.index("--trainer.max_epochs") + 1] == "3" for c in cells if c.kind != "imp")


def test_a_misspelled_callback_argument_is_refused_when_cells_are_built(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="LotteryTicket has no argument 'densty'; its arguments are pruner, rounds"):
        compare.ticket_args(pruner="magnitude", densty=0.5)
    assert compare.ticket_args(pruner="snip", fractions=None) == ["--ticket.pruner", "snip", "--ticket.fractions", "null"]

    class Renamed(LotteryTicket):  # a callback whose `density` argument was renamed
        def __init__(self, pruner="magnitude", rounds=10, epochs_per_round=1, target_density=None, seed=None,
                     dirpath=None, **kwargs):
            super().__init__(pruner, rounds, epochs_per_round, density=target_density, seed=seed, dirpath=dirpath,
                             **kwargs)

    monkeypatch.setattr(compare.cells, "LotteryTicket", Renamed)
    spec, imp = grid_of_every_kind(tmp_path)
    with pytest.raises(TypeError, match="no argument 'density'"):
        compare.phase_two(spec, imp)
    with pytest.raises(TypeError, match="no argument 'density'"):  # compare.run checks before any cell trains
        compare.cells.check_arguments(spec)
    assert not (tmp_path / "out").exists()


def test_what_a_cell_tells_lottery_fit_about_itself_leaves_its_key_as_it_was(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("seed_everything: 0\nticket: {rounds: 2}\n")
    source = str(tmp_path / "cells" / "abc" / "tickets" / "round_01.safetensors")
    imp = compare.Cell("imp", "imp", 0, ["--ticket.rounds", "3"])
    shuffled = compare.Cell("imp_shuffled", "shuffle", 1, ["--ticket.from_ticket", source], source=source,
                            source_artifact="ticket-imp-seed1:round-1")
    # the keys cells had before they carried W&B names: a finished comparison keeps its cells
    keys = imp.key(str(base), str(tmp_path)), shuffled.key(str(base), str(tmp_path))
    assert keys == ("97a599ce0c44", "f4ed7399ec94")


def test_a_cell_names_its_wandb_run_and_keeps_checkpoints_and_wandb_files_in_its_folder(tmp_path):
    from pytorch_lightning.loggers import WandbLogger

    from lottery.experiment import build_cli

    spec, imp = grid_of_every_kind(tmp_path)
    shuffled = next(c for c in compare.phase_two(spec, imp) if c.kind == "shuffle" and c.seed == 1)
    assert shuffled.source_artifact == "ticket-imp-seed1:round-1"
    folder = compare.cells.cell_folder(tmp_path / "my_comparison", "k")
    args = compare.fit_args(spec.base, folder, shuffled, spec.args)
    given = {a: args[i + 1] for i, a in enumerate(args) if a.startswith("--run.")}
    assert given == {"--run.experiment": "imp_shuffle", "--run.job_type": "shuffle", "--run.group": "out",
                     "--run.source": "ticket-imp-seed1:round-1"}  # group: the spec's `out`, wherever the cell trains
    assert {c.comparison for c in [*compare.phase_one(spec), shuffled]} == {"out"}
    anonymous = compare.Cell("imp", "imp", 0)  # built by hand: the comparison is named by its folder's place
    assert "my_comparison" in compare.fit_args(spec.base, folder, anonymous, [])
    assert args[args.index("--trainer.callbacks.dirpath") + 1] == str(folder / "checkpoints")
    assert "--trainer.logger.init_args.save_dir" not in args  # a base config without W&B
    # with a W&B base config: the cell's W&B run named for it, its files and checkpoints in the cell's folder
    wandb_base = str(ROOT / "configs" / "lenet300_fashion_imp_wandb.yaml")
    cell = compare.phase_one(spec)[1]
    cli = build_cli(compare.fit_args(wandb_base, folder, cell, spec.args)[1:], run=False)
    logger = cli.trainer.logger
    assert isinstance(logger, WandbLogger) and logger._experiment is None and logger.save_dir == str(folder)
    init = logger._wandb_init
    assert (init["name"], init["group"], init["job_type"]) == ("imp-magnitude-seed1", "out", "imp")
    assert [c.dirpath for c in cli.trainer.checkpoint_callbacks] == [str(folder / "checkpoints")]
