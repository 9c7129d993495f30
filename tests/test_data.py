import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lottery import data as D


def write_idx(folder: Path, n_train=50, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = D.IDX_FILES[split]
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        for stem, arr in ((images, x), (labels, y)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            raw = header + arr.tobytes()
            (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return x, y


def write_cifar(root: Path, n=12, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)


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


def test_idx_reader_round_trip(tmp_path):
    x, y = write_idx(tmp_path, gz=False)
    arrays = D.read_idx_folder(tmp_path)
    assert torch.equal(arrays[2][:, 0], torch.from_numpy(x)) and torch.equal(arrays[3], torch.from_numpy(y).long())


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


def test_cifar_reader_refuses_other_objects(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": pickle.loads}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D.read_cifar_batches(folder, ["data_batch_1"], "labels")


def test_tensor_loader_shuffles_per_epoch_and_shards():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    loader = D.TensorLoader(x, y, batch_size=4, seed=3)
    assert len(loader) == 3
    loader.set_epoch(0)
    e0 = torch.cat([b[1] for b in loader])
    loader.set_epoch(1)
    e1 = torch.cat([b[1] for b in loader])
    loader.set_epoch(0)
    again = torch.cat([b[1] for b in loader])
    assert sorted(e0.tolist()) == list(range(10)) and not torch.equal(e0, e1) and torch.equal(e0, again)
    shards = [torch.cat([b[1] for b in D.TensorLoader(x, y, 2, seed=3, rank=r, world_size=2)]) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5 and set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(10))


def test_random_crop_flip_gives_shifted_crops():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = D.random_crop_flip(x, 2, fill)
    padded = fill.view(1, 3, 1, 1).expand(2, 3, 9, 9).clone()
    padded[:, :, 2:7, 2:7] = x
    for n in range(2):
        candidates = [padded[n, :, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
        candidates += [c.flip(2) for c in candidates]
        assert any(torch.equal(out[n], c) for c in candidates)
    seen = {tuple(D.random_crop_flip(x, 2, fill)[0, 0, 0].tolist()) for _ in range(40)}
    assert len(seen) > 5  # crops really vary
