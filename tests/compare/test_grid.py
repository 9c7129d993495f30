import pytest

from grid_helpers import rows
from lottery import compare


def test_grid_with_two_workers_matches_sequential_and_resumes(spec, tmp_path):
    sequential = compare.run(spec("seq"), workers=1)
    parallel = compare.run(spec("par"), workers=2)
    expected = rows(sequential)
    assert [(r["experiment"], r["density"]) for r in expected] == [
        ("imp", "1.0"), ("imp", "0.800376"), ("imp", "0.640639"), ("imp_shuffled", "0.800376"),
        ("imp_shuffled", "0.640639"), ("random", "0.800376"), ("random", "0.640639")]
    assert rows(parallel) == expected
    assert (tmp_path / "par" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    # a killed comparison: two cells had not finished; running again trains those two only
    out = tmp_path / "seq"
    executed = (out / "executed.log").read_text().split()
    assert len(executed) == 5
    unfinished = [executed[1], executed[3]]
    for key in unfinished:
        (out / "cells" / key / "done.json").unlink()
    compare.run(spec("seq"), workers=1)
    assert (out / "executed.log").read_text().split() == executed + unfinished
    assert rows(out / "results.csv") == expected


def test_ray_launcher_gives_the_same_rows(spec, tmp_path):
    ray = pytest.importorskip("ray")
    sequential = compare.run(spec("seq"), workers=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = compare.run(spec("ray"), launcher="ray")
    finally:
        ray.shutdown()
    assert rows(on_ray) == rows(sequential)


def test_a_second_comparison_in_one_folder_is_refused(spec, tmp_path):
    from lottery.lock import RunLock, RunLockedError

    path = spec("busy")
    with RunLock(tmp_path / "busy", "lottery compare"):
        with pytest.raises(RunLockedError, match=f"{tmp_path / 'busy'} is in use by lottery compare \\(pid "):
            compare.run(path, workers=1)
    assert not (tmp_path / "busy" / "cells").exists()
