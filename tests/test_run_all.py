"""benchmarks/run_all.py: each benchmark's output, command and headline reach docs/benchmarks.md; failures show."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import run_all  # noqa: E402


def test_document_from_a_fake_suite(tmp_path, monkeypatch):
    suite = [run_all.Bench("Fast one", ["-c", "print('setup line'); print('lottery ratio 1.07')"], r"ratio", "<= 1.1"),
             run_all.Bench("Broken one", ["-c", "import sys; print('partial'); sys.exit('boom')"], r"ratio", "n/a"),
             run_all.Bench("Logs", ["-c", "import sys; sys.stderr.write('noise\\nround 1 done\\n')"], r"round", "-",
                           stderr=r"round"),
             run_all.Bench("Bar", ["-c", "print('Ep' + 'och 0 bar'); print('speed ratio 1.2')"], r"ratio", "-",
                           stdout=r"ratio")]
    monkeypatch.setattr(run_all, "benches", lambda quick, cuda: suite)
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--out", str(tmp_path / "benchmarks.md")])
    with pytest.raises(SystemExit) as exit_:
        run_all.main()
    assert exit_.value.code == 1  # one benchmark failed
    text = (tmp_path / "benchmarks.md").read_text()
    assert "| Fast one | lottery ratio 1.07 | <= 1.1 | `python -c print('setup line'); print('lottery ratio 1.07')` |" in text
    assert "setup line" in text  # the whole output is kept below the table
    assert "| Broken one **(failed, exit 1)** | – |" in text and "boom" in text
    assert "| Logs | round 1 done |" in text and "```\nround 1 done\n```" in text  # only the kept stderr line
    assert "```\nspeed ratio 1.2\n```" in text and "Epoch 0" not in text  # progress-bar lines dropped
    assert "Machine: " in text and "cores" in text
    assert "No GPU was present" in text or "GPU " in text
