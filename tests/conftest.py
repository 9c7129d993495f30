import os
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("WANDB_MODE", "offline")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")


@pytest.fixture
def fashion_mnist():
    """Skip when no Fashion-MNIST can be found, except in CI (LOTTERY_REQUIRE_DATA=1), where that fails."""
    from lottery.data import DataNotFoundError, FashionMNIST

    try:
        FashionMNIST().locate()
    except DataNotFoundError as err:
        if os.environ.get("LOTTERY_REQUIRE_DATA"):
            raise
        pytest.skip(f"Fashion-MNIST not available here: {err}")
