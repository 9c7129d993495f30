import pickle

import pytest
import torch
from safetensors.torch import save_file

from helpers import SmallCNN
from lottery import Ticket, TicketFormatError, prune
from lottery.ticket import pack_bits, unpack_bits


def make_ticket():
    torch.manual_seed(0)
    model = SmallCNN()
    return model, prune(model, "magnitude", density=0.3)


def test_pack_bits_round_trip():
    for shape in [(1,), (7,), (8,), (3, 5, 2), (13, 17)]:
        m = torch.rand(shape) > 0.5
        assert torch.equal(unpack_bits(pack_bits(m), shape), m)
    assert pack_bits(torch.ones(16, dtype=torch.bool)).numel() == 2


def test_save_load_round_trip(tmp_path):
    model, ticket = make_ticket()
    ticket.metadata["metrics"] = {"val_acc": 0.5}
    path = ticket.save(tmp_path / "t.safetensors")
    loaded = Ticket.load(path)
    assert loaded.masks.keys() == ticket.masks.keys()
    for n in ticket.masks:
        assert torch.equal(loaded.masks[n], ticket.masks[n])
    for n, w in ticket.weights.items():
        if n in ticket.masks:
            assert torch.equal(loaded.weights[n], w * ticket.masks[n])
        else:
            assert torch.equal(loaded.weights[n], w)
    assert loaded.metadata == ticket.metadata
    assert loaded.density == pytest.approx(0.3, abs=1 / 600)
    assert loaded.layer_densities() == ticket.layer_densities()
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_disk_holds_survivors_and_bit_masks(tmp_path):
    model, ticket = make_ticket()
    size = ticket.save(tmp_path / "t.safetensors").stat().st_size
    dense_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert size < 0.3 * dense_bytes + 3000  # survivors + bits + header, not dense copies


def test_apply_and_rewind(tmp_path):
    model, ticket = make_ticket()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ticket.rewind(model)
    for n, p in model.named_parameters():
        expected = init[n] * ticket.masks[n] if n in ticket.masks else init[n]
        assert torch.equal(p.detach(), expected)
    with torch.no_grad():
        model.fc.weight.fill_(3.0)
    ticket.apply(model)
    assert torch.equal(model.fc.weight != 0, ticket.masks["fc.weight"])


def test_pickle_and_truncated_files_are_refused(tmp_path):
    _, ticket = make_ticket()
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"masks": {}}))
    with pytest.raises(TicketFormatError, match="not a readable lottery ticket"):
        Ticket.load(evil)
    torch.save(ticket.masks, tmp_path / "masks.pt")
    with pytest.raises(TicketFormatError, match="never unpickled"):
        Ticket.load(tmp_path / "masks.pt")
    good = ticket.save(tmp_path / "good.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(TicketFormatError, match="cut short"):
        Ticket.load(cut)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, other)
    with pytest.raises(TicketFormatError, match="not a lottery ticket"):
        Ticket.load(other)
    with pytest.raises(FileNotFoundError, match="no ticket"):
        Ticket.load(tmp_path / "missing.safetensors")


def test_apply_to_the_wrong_model_says_so():
    _, ticket = make_ticket()
    with pytest.raises(KeyError, match="another one"):
        ticket.apply(torch.nn.Linear(3, 3))


def test_inconsistent_files_raise_ticket_format_errors(tmp_path):
    import json

    from safetensors.torch import save

    torch.manual_seed(0)
    ticket = prune(SmallCNN(), "magnitude", density=0.5)
    tensors, header = ticket.pack()
    cases = {
        "bad json": (tensors, "{not json"),
        "not an object": (tensors, "[1, 2]"),
        "missing tensor": ({k: v for i, (k, v) in enumerate(tensors.items()) if i}, json.dumps(header)),
        "wrong survivor count": ({k: (v[:-1] if v.dim() == 1 and v.is_floating_point() else v) for k, v in tensors.items()},
                                 json.dumps(header)),
    }
    for name, (ts, text) in cases.items():
        with pytest.raises(TicketFormatError, match="unreadable 'lottery' header|inconsistent"):
            Ticket.from_bytes(save(ts, metadata={"lottery": text}), source=name)


def _mlp(classes=10, hidden=300):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))


def _bumped(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _untouched(model, before):
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_rewind_refuses_a_bias_of_the_wrong_shape_before_copying_anything():
    model = _mlp()
    ticket = prune(model, "magnitude", density=0.3, scope="layerwise")
    ticket.weights["0.bias"] = torch.tensor([0.5])  # would broadcast into all 300 biases
    before = _bumped(model)
    with pytest.raises(ValueError, match=r"0\.bias has shape \[1\] in the ticket but \[300\] in the model"):
        ticket.rewind(model)
    assert _untouched(model, before)


def test_a_ticket_for_another_model_is_refused_naming_every_layer_and_both_shapes():
    ticket = prune(_mlp(classes=100), "magnitude", density=0.3, scope="layerwise")
    model = _mlp(classes=10)
    before = _bumped(model)
    with pytest.raises(ValueError, match=r"2\.weight has shape \[100, 300\] in the ticket but \[10, 300\] in the model") as err:
        ticket.rewind(model)
    assert "2.bias has shape [100] in the ticket but [10] in the model" in str(err.value)
    assert "0.weight" not in str(err.value) and _untouched(model, before)
    with pytest.raises(ValueError, match=r"2\.weight has shape \[100, 300\] in the ticket but \[10, 300\]"):
        ticket.apply(model)  # the same check on the masks alone
    assert _untouched(model, before)


def test_rewind_refuses_nan_and_inf_values_naming_the_tensors():
    model = _mlp()
    ticket = prune(model, "magnitude", density=0.3, scope="layerwise")
    ticket.weights["0.bias"][3] = float("nan")
    ticket.weights["2.weight"][ticket.masks["2.weight"]] = float("inf")
    before = _bumped(model)
    with pytest.raises(ValueError, match="not finite") as err:
        ticket.rewind(model)
    assert "0.bias (1 of 300 values)" in str(err.value) and "2.weight" in str(err.value) and "1.bias" not in str(err.value)
    assert _untouched(model, before)


def test_an_all_pruned_ticket_is_refused():
    model = _mlp()
    ticket = prune(model, "magnitude", density=0.3, scope="layerwise")
    ticket.masks = {n: torch.zeros_like(m) for n, m in ticket.masks.items()}
    before = _bumped(model)
    for use in (ticket.apply, ticket.rewind, ticket.check):
        with pytest.raises(ValueError, match="prunes every weight"):
            use(model)
    assert _untouched(model, before)


def test_uncovered_names_the_prunable_layers_a_ticket_leaves_dense():
    model = _mlp()
    ticket = prune(model, "magnitude", density=0.3, scope="layerwise")
    assert ticket.uncovered(["0.weight", "2.weight"]) == []
    del ticket.masks["2.weight"]
    assert ticket.uncovered(["0.weight", "2.weight"]) == ["2.weight"]
    ticket.rewind(model)  # a partial ticket is allowed; whoever trains it says which layers stay dense


def _header_cases():
    bad = {
        "shapes value is text": lambda h: h["shapes"].update({"fc.weight": "abc"}),
        "shapes is a list": lambda h: h.update(shapes=[1, 2]),
        "shapes is null": lambda h: h.update(shapes=None),
        "negative shape": lambda h: h["shapes"].update({"fc.weight": [-1]}),
        "non-integer shape": lambda h: h["shapes"].update({"fc.weight": [3, 144.5]}),
        "boolean shape": lambda h: h["shapes"].update({"fc.weight": [True, 3]}),
        "dense is a number": lambda h: h.update(dense=5),
        "dense shape is text": lambda h: h["dense"].update({"fc.bias": "abc"}),
        "dense shape negative": lambda h: h["dense"].update({"fc.bias": [-3]}),
        "metadata is text": lambda h: h.update(metadata="x"),
        "metadata is a list": lambda h: h.update(metadata=["ab"]),
        "metrics is text": lambda h: h["metadata"].update(metrics="x"),
        "metric is text": lambda h: h["metadata"].update(metrics={"val_acc": "high"}),
        "round is text": lambda h: h["metadata"].update(round="abc"),
        "version is text": lambda h: h.update(version="abc"),
        "version is null": lambda h: h.update(version=None),
        "no shapes": lambda h: h.pop("shapes"),
    }
    return list(bad.items())


@pytest.mark.parametrize("case,change", _header_cases(), ids=[c for c, _ in _header_cases()])
def test_malformed_header_values_are_ticket_format_errors(case, change):
    import json

    from safetensors.torch import save

    torch.manual_seed(0)
    ticket = prune(SmallCNN(), "magnitude", density=0.5)
    ticket.metadata.update(round=1, metrics={"val_acc": 0.5})
    tensors, header = ticket.pack()
    change(header)
    with pytest.raises(TicketFormatError, match=f"^runs/{case}.safetensors"):
        Ticket.from_bytes(save(tensors, metadata={"lottery": json.dumps(header)}), source=f"runs/{case}.safetensors")
