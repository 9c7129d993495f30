import pickle

import numpy as np
import pytest
import torch
from data_writers import write_idx

from lottery.data import files as D


def test_idx_reader_round_trip(tmp_path):
    x, y = write_idx(tmp_path, gz=False)
    arrays = D.read_idx_folder(tmp_path)
    assert torch.equal(arrays[2][:, 0], torch.from_numpy(x)) and torch.equal(arrays[3], torch.from_numpy(y).long())


def test_cifar_reader_refuses_other_objects(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": pickle.loads}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D.read_cifar_batches(folder, ["data_batch_1"], "labels")
