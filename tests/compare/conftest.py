import pytest
import yaml

from grid_helpers import ROOT


@pytest.fixture
def spec(tmp_path, fashion_mnist):
    def make(name, extra=()):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "base": str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), "seeds": [0], "out": str(tmp_path / name),
            "args": ["--ticket.rounds", "2", "--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "8",
                     "--trainer.limit_val_batches", "2", *extra],
            "experiments": [{"name": "imp", "kind": "imp"}, {"name": "imp_shuffled", "kind": "shuffle"},
                            {"name": "random", "kind": "pai", "pruner": "random"}]}))
        return path

    return make
