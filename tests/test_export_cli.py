"""`lottery export`: a run's ticket and trained weights to a saved inference model that loads without unpickling."""

import copy

import pytest
import torch
import yaml
from safetensors.torch import save_file
from user_code import TinyModule

from lottery import prune
from lottery.cli import main
from lottery.export import CSRLinear, load


@pytest.fixture
def run(tmp_path):
    """A run folder as `lottery fit` leaves it: config.yaml, tickets/round_01.safetensors, checkpoints/last.ckpt
    holding the weights trained under that ticket; and the masked dense model those weights give."""
    torch.manual_seed(0)
    config = {"model": {"class_path": "user_code.TinyModule", "init_args": {"hidden": 12}},
              "data": {"class_path": "user_code.TinyData"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    model = TinyModule(hidden=12)
    ticket = prune(model, "magnitude", density=0.3, rounds=1, scope="layerwise")
    ticket.metadata["round"] = 1
    ticket.save(tmp_path / "tickets" / "round_01.safetensors")
    trained = copy.deepcopy(model)
    with torch.no_grad():  # "training": survivors move, pruned weights stay zero as the Masker keeps them
        for name, p in trained.named_parameters():
            p.add_(0.1 * torch.randn_like(p))
            if name in ticket.masks:
                p.mul_(ticket.masks[name])
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, tmp_path / "checkpoints" / "last.ckpt")
    return tmp_path, ticket, trained.eval()


def export_args(folder, *extra):
    return ["export", str(folder / "tickets" / "round_01.safetensors"), "--config", str(folder / "config.yaml"),
            "--out", str(folder / "out"), *extra]


@pytest.mark.parametrize("to", ["csr", "compact"])
def test_export_writes_the_run_s_trained_ticket_and_load_rebuilds_it(run, to, capsys):
    folder, ticket, trained = run
    main(export_args(folder, "--to", to))  # weights: the run's newest checkpoint
    assert "wrote" in capsys.readouterr().out
    loaded = load(folder / "out")
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded(x), trained(x), atol=1e-5, rtol=1e-5)
    if to == "csr":
        assert isinstance(loaded.net[0], CSRLinear) and loaded.net[0].weight._nnz() == int(ticket.masks["net.0.weight"].sum())


def test_export_takes_weights_from_a_file_or_the_ticket_and_chooses_per_layer_at_a_batch(run, capsys):
    folder, ticket, trained = run
    save_file(trained.state_dict(), folder / "trained.safetensors")
    threads = torch.get_num_threads()
    try:
        main(export_args(folder, "--to", "csr", "--weights", str(folder / "trained.safetensors"), "--batch-size", "1",
                         "--threads", "1"))
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    for layer in ("net.0", "net.2"):
        assert f"{layer}: csr (at batch 1, threads=1:" in printed or f"{layer}: dense (at batch 1, threads=1:" in printed
    x = torch.randn(1, 8)
    torch.testing.assert_close(load(folder / "out")(x), trained(x), atol=1e-5, rtol=1e-5)
    main(export_args(folder, "--to", "compact", "--weights", "ticket"))  # the rewind values: untrained
    rewound = ticket.rewind(TinyModule(hidden=12)).eval()
    torch.testing.assert_close(load(folder / "out")(x), rewound(x), atol=1e-5, rtol=1e-5)


def refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return str(stop.value.code) + capsys.readouterr().err


def test_bad_input_is_refused_before_any_work_saying_what_to_do(run, capsys):
    folder, _, trained = run
    said = refused(["export", str(folder / "nope.safetensors"), "--config", str(folder / "config.yaml"), "--to", "csr",
                    "--out", str(folder / "out")], capsys)
    assert "no ticket at" in said and "nope.safetensors" in said
    said = refused(export_args(folder, "--to", "onnx"), capsys)
    assert "invalid choice: 'onnx'" in said and "csr" in said and "compact" in said
    said = refused(export_args(folder, "--to", "csr", "--config", str(folder / "missing.yaml")), capsys)
    assert "no config at" in said
    other = yaml.safe_load((folder / "config.yaml").read_text())
    other["model"]["init_args"]["hidden"] = 4
    (folder / "other.yaml").write_text(yaml.safe_dump(other))
    said = refused(export_args(folder, "--to", "csr", "--config", str(folder / "other.yaml")), capsys)
    assert "does not fit TinyModule: net.0.weight has shape [12, 8] in the ticket but [4, 8] in the model" in said
    dense = {n: v + 1 for n, v in trained.state_dict().items()}  # weights of the dense round, not of this ticket's
    save_file(dense, folder / "dense.safetensors")
    said = refused(export_args(folder, "--to", "csr", "--weights", str(folder / "dense.safetensors")), capsys)
    assert "were not trained under this ticket's masks" in said and "--weights" in said
    if not torch.cuda.is_available():
        said = refused(export_args(folder, "--to", "semi-structured"), capsys)
        assert "needs CUDA" in said and "Export to='csr' (CPU) or 'compact' here" in said
    (folder / "checkpoints" / "last.ckpt").unlink()
    said = refused(export_args(folder, "--to", "csr"), capsys)
    assert "no trained weights" in said and "--weights ticket" in said
    assert not (folder / "out").exists()
