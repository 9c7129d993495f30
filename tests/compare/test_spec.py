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
