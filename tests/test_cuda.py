"""What runs only on a GPU: sparse execution and the export formats on CUDA (skipped without one; run by
benchmarks/gpu_check.sh on a machine that has one)."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from helpers import Module
from lottery import LotteryTicket, export
from lottery.sparsity.execution import is_sparse, make_sparse

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_sparse_execution_on_cuda_gives_the_masked_dense_gradients():
    torch.manual_seed(0)
    layer, mask = nn.Linear(64, 32).cuda(), (torch.rand(32, 64) < 0.1).cuda()
    with torch.no_grad():
        layer.weight.mul_(mask)
    ref = nn.Linear(64, 32).cuda()
    ref.load_state_dict(layer.state_dict())
    make_sparse(layer, mask)
    x = torch.randn(16, 64, device="cuda")
    (layer(x) ** 2).sum().backward()
    (ref(x) ** 2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad * mask)
    torch.testing.assert_close(layer.bias.grad, ref.bias.grad)


def test_a_sparse_run_on_cuda_trains_as_masked_dense(tmp_path):
    def fit(**kw):
        pl.seed_everything(0)
        cb = LotteryTicket(rounds=2, epochs_per_round=1, prune_fraction=0.6, dirpath=str(tmp_path / str(kw)), **kw)
        module = Module(scheduler=None)
        pl.Trainer(callbacks=[cb], accelerator="gpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=tmp_path / str(kw)).fit(module)
        return module

    ref, module = fit(), fit(sparse_below=0.5)
    assert is_sparse(module.net.fc1)
    for (n, a), b in zip(ref.state_dict().items(), module.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3), n


class Wide(nn.Module):
    """Two Linear layers of shapes torch's 2:4 kernels take (float16: rows a multiple of 32, columns of 64)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(256, 128), nn.Linear(128, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_semi_structured_export_matches_the_masked_model_and_loads_back(tmp_path):
    torch.manual_seed(0)
    model = Wide().half().cuda()
    masks = {}
    for name in ("fc1", "fc2"):
        w = model.get_submodule(name).weight.detach().abs().reshape(-1, 4)
        keep = torch.zeros_like(w, dtype=torch.bool).scatter_(1, w.topk(2, dim=1).indices, True)  # 2 of every 4
        masks[f"{name}.weight"] = keep.view(model.get_submodule(name).weight.shape)
    semi = export(model, masks, to="semi-structured")
    x = torch.randn(64, 256, dtype=torch.half, device="cuda")
    with torch.no_grad():
        for name, mask in masks.items():
            model.get_parameter(name).mul_(mask)
        torch.testing.assert_close(semi(x), model(x), atol=0.05, rtol=0.01)
        export.save(semi, tmp_path / "semi")
        loaded = export.load(tmp_path / "semi").cuda()
        torch.testing.assert_close(loaded(x), model(x), atol=0.05, rtol=0.01)
