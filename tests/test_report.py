import torch

from lottery import Ticket
from lottery.layout import rounds_csv
from lottery.cli import main
from lottery.report import jaccard, total_jaccard


def two_tickets(tmp_path):
    a = Ticket({"fc.weight": torch.tensor([[True, True, False, False]]), "out.weight": torch.tensor([True, False])},
               metadata={"round": 1, "pruner": "magnitude"})
    b = Ticket({"fc.weight": torch.tensor([[False, True, True, False]]), "out.weight": torch.tensor([True, False])},
               metadata={"round": 2, "pruner": "synflow"})
    return a, b, a.save(tmp_path / "a.safetensors"), b.save(tmp_path / "b.safetensors")


def test_jaccard_of_known_masks(tmp_path):
    a, b, _, _ = two_tickets(tmp_path)
    assert jaccard(a, b) == {"fc.weight": 1 / 3, "out.weight": 1.0}
    assert total_jaccard(a, b) == 2 / 4


def test_inspect_prints_densities_and_overlap(tmp_path, capsys):
    _, _, pa, pb = two_tickets(tmp_path)
    main(["inspect", str(pa), str(pb)])
    out = capsys.readouterr().out
    fc = next(line for line in out.splitlines() if line.startswith("fc.weight"))
    assert fc.split() == ["fc.weight", "4", "0.5000", "0.5000", "0.3333"]
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "6", "0.5000", "0.5000", "0.5000"]
    assert "pruner=synflow" in out


def test_report_writes_plots_and_table(tmp_path, capsys):
    folder = tmp_path / "run" / "version_0" / "tickets"
    tickets = []
    for r in range(3):
        keep = torch.arange(100) < int(100 * 0.8**r)
        t = Ticket({"fc.weight": keep.view(10, 10), "out.weight": keep[:20]}, metadata={
            "round": r, "pruner": "magnitude", "rewind": "init", "steps": 10,
            "metrics": {"val_acc": 0.9 - 0.01 * r, "test_acc": 0.89 - 0.01 * r, "test_acc_at_best": 0.9, "best_step": 5}})
        tickets.append(t)
        t.save(folder / f"round_{r:02d}.safetensors")
    (folder / "rounds.csv").write_text(rounds_csv(tickets))
    main(["report", str(tmp_path / "run")])
    for name in ("accuracy_vs_density.png", "layer_density.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (folder / "report.md").read_text()
    assert "| round | density | best_step | val_acc | test_acc | test_acc_at_best |" in md
    assert "| 0 | 1.0000 | 5 | 0.9000 | 0.8900 | 0.9000 |" in md
    assert "| 2 | 0.7000 | 5 | 0.8800 | 0.8700 | 0.9000 |" in md  # (64 + 20) / 120 weights


def test_report_on_a_truncated_rounds_csv_names_the_file(tmp_path):
    import pytest

    folder = tmp_path / "run" / "version_0" / "tickets"
    folder.mkdir(parents=True)
    t = Ticket({"fc.weight": torch.ones(4, 4, dtype=torch.bool)}, metadata={"round": 0, "metrics": {"val_acc": 0.5}})
    t.save(folder / "round_00.safetensors")
    full = rounds_csv([t])
    (folder / "rounds.csv").write_text(full.splitlines()[0] + "\n0,1.0")  # the header and half a row
    with pytest.raises(ValueError, match=r"rounds.csv is incomplete \(line 2 has 2 of \d+ fields\)"):
        main(["report", str(tmp_path / "run")])


def test_report_on_a_rounds_csv_with_a_density_that_is_no_number_names_the_file_and_line(tmp_path):
    import pytest

    folder = tmp_path / "run" / "tickets"
    folder.mkdir(parents=True)
    t = Ticket({"fc.weight": torch.ones(4, 4, dtype=torch.bool)}, metadata={"round": 0, "metrics": {"val_acc": 0.5}})
    lines = rounds_csv([t, t]).splitlines()
    (folder / "rounds.csv").write_text("\n".join([lines[0], lines[1], lines[2].replace("1.000000", "1.0x")]) + "\n")
    with pytest.raises(ValueError, match=r"tickets/rounds.csv line 3: density is '1.0x', not a number"):
        main(["report", str(tmp_path / "run")])
