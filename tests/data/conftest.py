import pytest

from lottery.data import modules as D


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No download, no environment variable, no system copy unless a test puts one there."""
    monkeypatch.delenv("LOTTERY_DATA", raising=False)

    def fail(self, root):
        raise RuntimeError("Name or service not known")

    monkeypatch.setattr(D._MNISTLike, "_download", fail)
    monkeypatch.setattr(D._CIFAR, "_download", fail)
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    return tmp_path
