import pytest
from data_writers import write_cifar, write_idx

from lottery.data import modules as D


def test_discovery_order(offline, monkeypatch):
    tmp = offline
    write_idx(tmp / "given", seed=1)
    write_idx(tmp / "env" / "FashionMNIST" / "raw", seed=2, gz=False)  # torchvision's layout
    monkeypatch.setenv("LOTTERY_DATA", str(tmp / "env"))
    dm = D.FashionMNIST(data_dir=str(tmp / "given"), val_size=10)
    dm.locate()
    assert dm.source == str(tmp / "given")
    dm = D.FashionMNIST(val_size=10)
    dm.locate()
    assert dm.source == str(tmp / "env")
    # download next: it succeeds when the network does
    monkeypatch.delenv("LOTTERY_DATA")
    monkeypatch.setattr(D._MNISTLike, "_download", lambda self, root: D.read_idx_folder(tmp / "given"))
    dm = D.FashionMNIST(val_size=10)
    dm.locate()
    assert dm.source.startswith("torchvision download")


def test_debian_fallback_after_failed_download(offline, monkeypatch):
    write_idx(offline / "debian")
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST", offline / "debian")
    dm = D.FashionMNIST(val_size=10, batch_size=8)
    dm.setup("fit")
    assert dm.source == str(offline / "debian")
    assert [len(dm._splits[s][0]) for s in ("train", "val", "test")] == [40, 10, 20]
    with pytest.raises(D.DataNotFoundError):  # MNIST has no system copy to fall back to
        D.MNIST().locate()


def test_one_clear_error_when_nothing_is_found(offline, monkeypatch):
    monkeypatch.setenv("LOTTERY_DATA", str(offline / "empty"))
    with pytest.raises(D.DataNotFoundError) as err:
        D.FashionMNIST(data_dir=str(offline / "nowhere")).locate()
    msg = str(err.value)
    for part in ["nowhere", "LOTTERY_DATA=", "torchvision download", "Name or service not known", "no-debian",
                 "apt-get install dataset-fashion-mnist"]:
        assert part in msg, part


def test_cifar_small_files_and_split(offline):
    write_cifar(offline / "c")
    dm = D.CIFAR10(data_dir=str(offline / "c"), val_size=6, batch_size=16)
    dm.setup("fit")
    assert dm._splits["train"][0].shape == (54, 3, 32, 32)
    assert dm._splits["val"][0].shape == (6, 3, 32, 32) and dm._splits["test"][0].shape == (12, 3, 32, 32)
    assert dm.augment and dm.val_splits == ("val", "test")
