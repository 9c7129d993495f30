"""LotteryTicket on models this project did not write: Lightning's demo transformer and BoringModel, torchvision's
ResNet-18. Densities follow the schedule exactly, pruned weights are exactly zero, rewinds restore the init."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.demos import LightningTransformer
from pytorch_lightning.demos.boring_classes import BoringModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lottery import LotteryTicket
from lottery.sparsity import default_prunable, kept_count


class Transformer(LightningTransformer):
    """Lightning's demo, on token batches made here (its own data would be downloaded)."""

    def prepare_data(self):
        pass

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, 50, (16, 9), generator=g)
        return DataLoader(TensorDataset(tokens[:, :-1], tokens[:, 1:]), batch_size=4)


def fit(module, cb, **kw):
    kw.setdefault("logger", False)
    t = pl.Trainer(callbacks=[cb], accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, num_sanity_val_steps=0, **kw)
    t.fit(module)
    return t


def check_ticket_rounds(module, cb, init, layerwise=False):
    """Each round's exact kept counts, pruned weights at zero, rewind values = the init."""
    names = list(cb.tickets[-1].masks)
    params = dict(module.named_parameters())
    sizes = {n: params[n].numel() for n in names}
    for t in cb.tickets:
        kept = sum(int(m.sum()) for m in t.masks.values())
        assert kept == kept_count(sum(sizes.values()), cb.prune_fraction, t.round)  # global: one pool
        for n in names:  # rewind="init": every ticket starts from the values before the first step
            assert torch.equal(t.weights[n], init[n])
    for n, m in cb.tickets[-1].masks.items():
        assert not params[n][~m].any(), n  # exactly zero


def test_lightnings_demo_transformer(tmp_path):
    pl.seed_everything(0)
    module = Transformer(vocab_size=50)
    init = {k: v.detach().clone() for k, v in module.state_dict().items()}
    cb = LotteryTicket(rounds=2, epochs_per_round=1, dirpath=str(tmp_path / "t"))
    with pytest.warns(UserWarning, match="had no validation"):  # the demo has no validation_step
        fit(module, cb)
    assert set(cb.tickets[-1].masks) == set(default_prunable(module))
    check_ticket_rounds(module, cb, init)


def test_lightnings_boring_model(tmp_path):
    pl.seed_everything(0)
    module = BoringModel()
    init = {k: v.detach().clone() for k, v in module.state_dict().items()}
    cb = LotteryTicket(rounds=2, epochs_per_round=1, dirpath=str(tmp_path / "t"))
    fit(module, cb, limit_train_batches=4, limit_val_batches=0)
    assert [round(t.density, 4) for t in cb.tickets] == [1.0, 0.7969, 0.6406]  # 64 weights: 51, 41 kept
    check_ticket_rounds(module, cb, init)


def test_boring_models_validation_logs_nothing_to_monitor(tmp_path):
    with pytest.raises(ValueError, match="logged nothing"):
        fit(BoringModel(), LotteryTicket(rounds=1, epochs_per_round=1, dirpath=str(tmp_path / "t")),
            limit_train_batches=2, limit_val_batches=2)


class ResNet18(pl.LightningModule):
    """torchvision's ResNet-18 on 32x32 images of 4 classes."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.net = torchvision.models.resnet18(num_classes=4)
        self.example_input_array = torch.zeros(1, 3, 32, 32)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    def _loader(self, seed):
        g = torch.Generator().manual_seed(seed)
        return DataLoader(TensorDataset(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 4, (8,), generator=g)),
                          batch_size=4)

    def train_dataloader(self):
        return self._loader(0)

    def val_dataloader(self):
        return self._loader(1)


def test_torchvision_resnet18(tmp_path):
    pytest.importorskip("torchvision")
    pl.seed_everything(0)
    module = ResNet18()
    init = {k: v.detach().clone() for k, v in module.state_dict().items()}
    cb = LotteryTicket(rounds=1, epochs_per_round=1, dirpath=str(tmp_path / "t"))
    fit(module, cb)
    assert len(cb.tickets[-1].masks) == 21  # 20 convolutions (3 of them 1x1 shortcuts) and the classifier
    check_ticket_rounds(module, cb, init)
    assert cb.tickets[1].metrics["best_val_loss"] == cb.tickets[1].metrics["best_val_loss"]  # measured


def test_snip_at_init_scores_the_demo_transformer_with_its_own_training_step(tmp_path):
    pl.seed_everything(0)
    module = Transformer(vocab_size=50)  # forward(inputs, target): the pruner's own loss cannot call it
    cb = LotteryTicket(pruner="snip", density=0.5, epochs_per_round=0, dirpath=str(tmp_path / "t"))
    with pytest.warns(UserWarning, match="had no validation"):
        fit(module, cb, max_epochs=1)
    assert cb.rounds == 1 and cb.tickets[-1].density == pytest.approx(0.5, abs=1e-4)


def test_a_module_with_dict_batches_scores_with_its_training_step(tmp_path):
    class DictBatches(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch["x"]), batch["y"])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            rows = [{"x": torch.randn(6, generator=g), "y": int(torch.randint(0, 3, (1,), generator=g))} for _ in range(16)]
            return DataLoader(rows, batch_size=4)

    pl.seed_everything(0)
    with pytest.raises(ValueError, match="loss_fn"):  # the pruner's own loss needs (inputs, labels) batches
        fit(DictBatches(), LotteryTicket(pruner="snip", density=0.5, epochs_per_round=0, loss_fn="cross_entropy",
                                         dirpath=str(tmp_path / "a")), max_epochs=1)
    cb = LotteryTicket(pruner="snip", density=0.5, epochs_per_round=0, dirpath=str(tmp_path / "b"))  # training_step
    with pytest.warns(UserWarning, match="had no validation"):
        fit(DictBatches(), cb, max_epochs=1)
    assert cb.tickets[-1].density == pytest.approx(0.5, abs=0.01)


class Attention(pl.LightningModule):
    """An embedding, multi-head attention, a weight-normed layer and a decoder tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.ff = nn.utils.parametrizations.weight_norm(nn.Linear(16, 16))
        self.decoder = nn.Linear(16, 20, bias=False)
        self.decoder.weight = self.embed.weight

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.decoder(torch.relu(self.ff(h)))

    def training_step(self, batch, batch_idx):
        tokens, targets = batch
        return nn.functional.cross_entropy(self(tokens).flatten(0, 1), targets.flatten())

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.training_step(batch, batch_idx))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)

    def _loader(self, seed):
        g = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, 20, (16, 7), generator=g)
        return DataLoader(TensorDataset(tokens[:, :-1], tokens[:, 1:]), batch_size=4)

    def train_dataloader(self):
        return self._loader(0)

    def val_dataloader(self):
        return self._loader(1)


def test_attention_embedding_weight_norm_and_tied_weights_with_include(tmp_path, caplog):
    pl.seed_everything(0)
    module = Attention()
    cb = LotteryTicket(rounds=2, epochs_per_round=1, include=["*in_proj_weight", "embed.weight"], scope="layerwise",
                       dirpath=str(tmp_path / "t"))
    with caplog.at_level("INFO"):
        fit(module, cb)
    masks = cb.tickets[-1].masks
    assert set(masks) == {"embed.weight", "attn.in_proj_weight", "attn.out_proj.weight",
                          "ff.parametrizations.weight.original1"}  # the tied decoder shares embed.weight's mask
    for n, m in masks.items():
        assert int(m.sum()) == kept_count(m.numel(), cb.prune_fraction, 2), n  # layerwise: exact per layer
    assert not module.decoder.weight[~masks["embed.weight"]].any()  # the tied tensor: one mask
    assert not module.ff.weight[~masks["ff.parametrizations.weight.original1"]].any()  # the effective weight
    assert "shared: decoder.weight = embed.weight" in caplog.text and "pruning 4 weights" in caplog.text


def test_a_training_step_that_reads_its_trainer_asks_for_a_loss_fn(tmp_path):
    from helpers import Module

    class Reads(Module):
        lottery_loss = None  # not declared: scored with its training_step, which reads self.trainer

    module = Reads(scheduler=None)
    module.record = True
    with pytest.raises(RuntimeError, match="reads its Trainer.*loss_fn="):
        fit(module, LotteryTicket(pruner="snip", density=0.5, epochs_per_round=0, dirpath=str(tmp_path / "t")),
            max_epochs=1)
