"""include=: any floating-point parameter can be pruned (attention in-projections, embeddings), parametrized
Linear/Conv weights are pruned at their original tensor, tied weights share one mask, and the summary of the log."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import orthogonal, spectral_norm, weight_norm

from lottery import prune, sparsity
from lottery.plan import Plan
from lottery.pruning import PRUNERS, Pruner, get
from lottery.sparsity import Masker, kept_count, prunable

INCLUDE = ["*in_proj_weight", "embed.weight"]


class TinyLM(nn.Module):
    """Embedding, attention, a weight-normed and a spectral-normed Linear, a decoder tied to the embedding.

    `order` says which of the tied pair is registered first ("embed" or "decoder"); `tied=False` unties them.
    """

    def __init__(self, vocab=40, d=16, order="embed", tied=True):
        super().__init__()
        if order == "decoder":
            self.decoder = nn.Linear(d, vocab, bias=False)
        self.embed = nn.Embedding(vocab, d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ff = weight_norm(nn.Linear(d, d))
        self.sn = spectral_norm(nn.Linear(d, d))
        if order != "decoder":
            self.decoder = nn.Linear(d, vocab, bias=False)
        if tied:
            self.decoder.weight = self.embed.weight

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = h + self.sn(torch.relu(self.ff(h)))
        return self.decoder(h)


def shared_name(model):
    return "decoder.weight" if next(iter(dict(model.named_parameters()))) == "decoder.weight" else "embed.weight"


def effective(model):
    """The weights the forward pass uses, keyed like the masks that prune them."""
    shared = shared_name(model)
    return {"attn.in_proj_weight": model.attn.in_proj_weight, shared: model.embed.weight,
            "attn.out_proj.weight": model.attn.out_proj.weight,
            "ff.parametrizations.weight.original1": model.ff.weight,
            "sn.parametrizations.weight.original": model.sn.weight}


@pytest.mark.parametrize("order", ["embed", "decoder"])
def test_default_finds_parametrized_and_tied_weights(order):
    model = TinyLM(order=order)
    shared = shared_name(model)
    names = prunable(model)
    assert set(names) == {shared, "attn.out_proj.weight", "ff.parametrizations.weight.original1",
                          "sn.parametrizations.weight.original"}
    assert "attn.in_proj_weight" not in names  # not by default: explicit include= only
    assert set(prunable(model, include=INCLUDE)) == set(names) | {"attn.in_proj_weight"}
    # the second name of a tied weight works in patterns, mapped to the one shared tensor
    assert prunable(model, exclude=["decoder.weight"]) == prunable(model, exclude=["embed.weight"])
    assert shared not in prunable(model, exclude=["decoder.weight"])


def test_untied_embedding_only_with_include():
    model = TinyLM(tied=False)
    assert "embed.weight" not in prunable(model)
    assert "embed.weight" in prunable(model, include=["embed.weight"])
    assert "decoder.weight" in prunable(model)


@pytest.mark.parametrize("order", ["embed", "decoder"])
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_prune_included_reaches_density_and_zeroes_effective_weights(order, scope):
    torch.manual_seed(0)
    model = TinyLM(order=order)
    ticket = prune(model, "magnitude", density=0.5, scope=scope, include=INCLUDE)
    shared = shared_name(model)
    assert set(ticket.masks) == set(effective(model))
    assert not {"embed.weight", "decoder.weight"} - {shared} & set(ticket.masks)  # one mask for the tied pair
    sizes = {n: m.numel() for n, m in ticket.masks.items()}
    kept = {n: int(m.sum()) for n, m in ticket.masks.items()}
    if scope == "layerwise":
        assert kept == {n: kept_count(s, 0.5, 1) for n, s in sizes.items()}
    else:
        assert sum(kept.values()) == kept_count(sum(sizes.values()), 0.5, 1)
    ticket.rewind(model)
    with torch.no_grad():
        for n, w in effective(model).items():
            assert torch.all(w[~ticket.masks[n]] == 0), n
            assert int(w.count_nonzero()) == kept[n], n
        assert model.decoder.weight is model.embed.weight
        assert torch.isfinite(model(torch.randint(0, 40, (2, 5)))).all()


def test_masker_zeroes_parametrized_originals_and_their_grads():
    torch.manual_seed(1)
    model = TinyLM()
    masks = prune(model, "magnitude", density=0.3, scope="layerwise", include=INCLUDE).masks
    masker = Masker(model, masks)
    masker.apply()
    model(torch.randint(0, 40, (2, 5))).sum().backward()
    masker.zero_grads()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, w in effective(model).items():
            assert torch.all(w[~masks[n]] == 0), n
            assert torch.all(params[n].grad[~masks[n]] == 0), n
    # a mask given under the second name of a tied weight masks the shared tensor
    alias = {"decoder.weight": torch.zeros_like(model.embed.weight, dtype=torch.bool)}
    Masker(model, alias).apply()
    assert not model.embed.weight.any()


def test_old_style_weight_norm_and_spectral_norm_are_found():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(nn.utils.weight_norm(nn.Linear(6, 5)), nn.ReLU(), nn.utils.spectral_norm(nn.Linear(5, 3)))
    assert prunable(model) == ["0.weight_v", "2.weight_orig"]
    torch.manual_seed(0)
    ticket = prune(model, "magnitude", density=0.5, scope="layerwise")
    ticket.apply(model)
    model(torch.randn(2, 6))  # their hooks recompute `weight` in forward
    assert torch.all(model[0].weight[~ticket.masks["0.weight_v"]] == 0)
    assert torch.all(model[2].weight[~ticket.masks["2.weight_orig"]] == 0)


def test_weight_norm_row_emptied_is_refused():
    model = nn.Sequential(weight_norm(nn.Linear(8, 4)), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].parametrizations.weight.original1[1].fill_(1e-6)  # magnitude prunes this row first
    with pytest.raises(ValueError, match=r"row 1 .*weight_norm.*NaN"):
        prune(model, "magnitude", density=0.7)


def test_include_errors():
    model = TinyLM()
    with pytest.raises(ValueError, match=r"include pattern 'nothing\*' matches no floating-point parameter.*attn.in_proj_weight"):
        prunable(model, include=["nothing*"])
    model.register_parameter("codes", nn.Parameter(torch.zeros(3, dtype=torch.long), requires_grad=False))
    with pytest.raises(ValueError, match=r"codes.*not floating-point"):
        prunable(model, include=["codes"])
    with pytest.raises(ValueError, match="include pattern"):
        Plan(model, 0.2, "global", None, (), ["nothing*"])
    # a model with no Linear or Conv is prunable through include=
    emb = nn.Sequential(nn.Embedding(10, 4))
    assert prunable(emb, include=["0.weight"]) == ["0.weight"]
    with pytest.raises(ValueError, match="include="):
        prunable(emb)


def test_parametrization_that_does_not_keep_zeros_is_refused():
    model = nn.Sequential(orthogonal(nn.Linear(6, 6)), nn.Linear(6, 2))
    assert prunable(model) == ["1.weight"]  # left dense by default, and named in the summary
    assert "0.parametrizations.weight.original" in sparsity.summary(model, prunable(model))
    with pytest.raises(ValueError, match="does not keep zeros"):
        prunable(model, include=["0.parametrizations.weight.original"])


def test_summary_names_pruned_dense_and_shared():
    model = TinyLM()
    line = sparsity.summary(model, prunable(model))
    assert "\n" not in line
    assert line.startswith("pruning 4 weights (")
    assert "left dense: 1 large matrix, 768 entries (attn.in_proj_weight 768)" in line and "include=" in line
    assert "shared: decoder.weight = embed.weight" in line
    full = sparsity.summary(model, prunable(model, include=INCLUDE))
    assert "pruning 5 weights" in full and "left dense" not in full


class Data:
    """(x, y) batches for the data-driven pruners."""

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(2):
            yield torch.randn(8, 3, 8, generator=g), torch.randint(0, 4, (8,), generator=g)


class AttnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 4)
        self.example_input_array = torch.ones(1, 3, 8)

    def forward(self, x):
        return self.head(self.attn(x, x, x)[0].mean(1))  # need_weights: GraSP's double backward has no fused path


@pytest.mark.filterwarnings("ignore:only .* have a non-zero score")  # SynFlow: all-ones tokens leave q, k unscored
@pytest.mark.parametrize("name", sorted(PRUNERS))
@pytest.mark.parametrize("invert", [False, True])
def test_every_pruner_scores_included_weights(name, invert):
    torch.manual_seed(0)
    model = AttnNet()
    pr = get(name)
    ticket = prune(model, pr, density=0.5, rounds=2, batches=Data() if pr.needs_data else None,
                   scope="layerwise", include=["attn.in_proj_weight"], invert=invert)
    assert set(ticket.masks) == {"attn.in_proj_weight", "attn.out_proj.weight", "head.weight"}
    assert int(ticket.masks["attn.in_proj_weight"].sum()) == kept_count(24 * 8, 1 - 0.5**0.5, 2)


def test_a_pruner_that_leaves_out_included_weights_is_named():
    class OnlyLinear(Pruner):
        name = ""

        def scores(self, model, batches=None):
            from lottery.sparsity import default_prunable

            params = dict(model.named_parameters())
            return {n: params[n].abs() for n in default_prunable(model)}

    with pytest.raises(KeyError, match=r"attn.in_proj_weight.*prunable_parameters"):
        prune(AttnNet(), OnlyLinear(), density=0.5, include=["attn.in_proj_weight"])
