import pytest
import yaml

from grid_helpers import ROOT
from lottery import compare


def test_comparison_files_are_checked(tmp_path):
    for path in sorted((ROOT / "configs").glob("compare_*.yaml")):  # every shipped comparison loads
        assert compare.Spec.load(path).experiments[0]["kind"] == "imp"
    spec = compare.Spec.load(ROOT / "configs" / "compare_lenet300_fashion.yaml")
    assert [e["name"] for e in spec.experiments][:3] == ["imp", "imp_reinit", "imp_shuffled"] and spec.seeds == [0, 1, 2]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": "configs/lenet300_fashion_imp.yaml", "experiments": [{"name": "x", "kind": "pai"}]}))
    with pytest.raises(ValueError, match="needs a pruner"):
        compare.Spec.load(bad)
    bad.write_text(yaml.safe_dump({"base": "configs/lenet300_fashion_imp.yaml", "experiments": [], "worker": 2}))
    with pytest.raises(ValueError, match="unknown keys \\['worker'\\]"):
        compare.Spec.load(bad)


def write_spec(path, **extra):
    path.write_text(yaml.safe_dump({"base": str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), "launcher": "ray",
                                    "experiments": [{"name": "imp", "kind": "imp"}], **extra}))
    return path


def test_gpus_per_cell_is_checked_before_any_cell_starts(tmp_path):
    path = tmp_path / "spec.yaml"
    for good in (0, 0.5, 1, 2, 2.0):
        assert compare.Spec.load(write_spec(path, gpus_per_cell=good)).gpus_per_cell == good
    assert compare.Spec.load(write_spec(path)).gpus_per_cell is None  # default: the cluster decides
    for bad in ("one", -1, True, 1.5, float("nan"), [1]):
        with pytest.raises(ValueError) as err:
            compare.Spec.load(write_spec(path, gpus_per_cell=bad))
        message = str(err.value)
        # what was wrong, what is allowed, what to do
        assert f"{path}: gpus_per_cell must be" in message and f"got {bad!r}" in message, message
        assert "0 (CPU cells)" in message and "a whole number" in message and "gpus_per_cell: 1" in message, message


def test_storage_is_checked_before_any_cell_starts(tmp_path):
    path = tmp_path / "spec.yaml"
    for good in (f"file://{tmp_path}/store", str(tmp_path / "store")):
        assert compare.Spec.load(write_spec(path, storage=good)).storage == good
    assert not (tmp_path / "store").exists()  # checked, not created
    for bad, why in (("nosuch://bucket/x", "Protocol not known: nosuch"), (3, "not a URL")):
        with pytest.raises(ValueError) as err:
            compare.Spec.load(write_spec(path, storage=bad))
        message = str(err.value)
        assert f"{path}: storage {bad!r}" in message and why in message, message
        assert "s3:// needs s3fs" in message and "leave storage out" in message, message
