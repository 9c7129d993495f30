"""Tickets as inference models: CSR and compact exports match the masked dense model; refusals say what to do."""

import copy
import json

import pytest
import torch
from helpers import MLP
from torch import nn

from lottery import prune
from lottery.export import CSRLinear, export


def masked(model, masks):
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for n, p in out.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return out


@pytest.fixture
def ticket_and_model():
    torch.manual_seed(0)
    model = MLP((20, 64, 32, 4))
    return prune(model, "magnitude", density=0.05, rounds=1, scope="layerwise"), model


def test_csr_layers_hold_only_the_survivors_and_match_the_masked_model(ticket_and_model):
    ticket, model = ticket_and_model
    exported = export(model, ticket, to="csr")
    x = torch.randn(7, 3, 20)  # any leading dimensions
    torch.testing.assert_close(exported(x), masked(model, ticket.masks)(x), atol=1e-5, rtol=1e-5)
    for name in ("fc1", "fc2", "fc3"):
        layer = getattr(exported, name)
        assert isinstance(layer, CSRLinear) and layer.weight._nnz() == int(ticket.masks[f"{name}.weight"].sum())
    assert isinstance(model.fc1, nn.Linear)  # the given model is left as it was


def test_compact_removes_disconnected_neurons_and_folds_constant_ones():
    torch.manual_seed(0)
    model = MLP((6, 5, 4, 2))
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    masks["fc1.weight"][1] = False  # hidden neuron 1 gets no input: outputs relu(bias), folded into fc2's bias
    masks["fc2.weight"][:, 3] = False  # hidden neuron 3 of fc1 feeds nothing: unused
    masks["fc2.weight"][2] = False  # fc2's neuron 2: no input
    masks["fc3.weight"][:, 0] = False  # fc2's neuron 0: feeds nothing
    exported = export(model, masks, to="compact")
    assert (exported.fc1.out_features, exported.fc2.in_features, exported.fc2.out_features, exported.fc3.in_features) \
        == (3, 3, 2, 2)
    assert exported.compact_removed == 4
    x = torch.randn(10, 6)
    torch.testing.assert_close(exported(x), masked(model, masks)(x))


def test_refusals_say_what_to_do(ticket_and_model):
    ticket, model = ticket_and_model
    with pytest.raises(ValueError, match="unknown export format 'onnx'; choose one of csr, semi-structured, compact"):
        export(model, ticket, to="onnx")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs CUDA.*Export to='csr'"):
            export(model, ticket, to="semi-structured")
    with pytest.raises(KeyError, match="does not have"):
        export(nn.Sequential(nn.Linear(20, 4)), ticket)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x  # data-dependent control flow: fx cannot trace it

    with pytest.raises(ValueError, match="cannot trace Branchy.*to='csr'"):
        export(Branchy(), {"fc.weight": torch.ones(4, 4, dtype=torch.bool)}, to="compact")


class ConvBN(nn.Module):
    """conv (padded) → BatchNorm2d → relu → conv (no padding) → relu → max-pool → flatten → Linear."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(5 * 4 * 4, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv2(x))), 1))


def all_kept(model):
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()
            if n.endswith("weight") and p.dim() > 1}


def conv_bn():
    torch.manual_seed(0)
    model = ConvBN().eval()
    with torch.no_grad():  # statistics of a trained net, so BatchNorm's shift of a constant channel matters
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn1.bias.uniform_(0.1, 0.5)
        model.conv1.bias.abs_().add_(0.6)  # BN(constant) > 0: relu passes it on
        model.conv2.bias.abs_().add_(0.1)
    return model


def test_compact_removes_conv_channels_slices_batchnorm_and_folds_exact_constants():
    model = conv_bn()
    masks = all_kept(model)
    masks["conv1.weight"][1] = False  # channel 1 gets no input: a constant map, folded into conv2's bias (no padding)
    masks["conv2.weight"][:, 4] = False  # channel 4 of conv1 feeds nothing
    masks["conv2.weight"][2] = False  # conv2's channel 2: a constant, folded into fc's bias (16 features after flatten)
    exported = export(model, masks, to="compact")
    assert (exported.conv1.out_channels, exported.bn1.num_features, exported.conv2.in_channels,
            exported.conv2.out_channels, exported.fc.in_features) == (4, 4, 4, 4, 4 * 16)
    assert exported.compact_removed == 3
    x = torch.randn(3, 3, 10, 10)
    torch.testing.assert_close(exported(x), masked(model, masks)(x), atol=1e-5, rtol=1e-5)


def test_compact_keeps_a_constant_channel_before_padding_and_drops_a_zero_one():
    from lottery.models import ConvNet

    torch.manual_seed(0)
    model = ConvNet(2, num_classes=3, image_size=8).eval()
    masks = all_kept(model)
    with torch.no_grad():
        model.features[0].bias[[1, 2]] = torch.tensor([0.5, -0.5])
    masks["features.0.weight"][[1, 2]] = False  # relu(0.5) meets conv 2's zero padding: kept; relu(-0.5) = 0: dropped
    masks["classifier.1.weight"][:, 16 * 5:16 * 6] = False  # conv 2's channel 5 feeds no feature of the Linear
    exported = export(model, masks, to="compact")
    assert exported.features[0].out_channels == 63 and exported.features[2].in_channels == 63
    assert exported.features[2].out_channels == 63 and exported.classifier[1].in_features == 63 * 16
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(exported(x), masked(model, masks)(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("choice", ["c", "torch"])
def test_csr_conv_matches_the_masked_convolution_for_any_stride_padding_and_dilation(monkeypatch, choice):
    """On lottery's direct sparse convolution and on torch's CSR product with the unfolded input."""
    from lottery.export import CSRConv2d
    from lottery.sparsity import kernels

    if choice == "c" and kernels.library() is None:
        pytest.skip("no C compiler here: lottery's kernels cannot be built")
    calls = []
    real = kernels.sparse_conv2d
    monkeypatch.setattr(kernels, "sparse_conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(kernels, "_forced", choice)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=(1, 2), dilation=2), nn.ReLU(),
                          nn.Conv2d(8, 4, (2, 3), bias=False), nn.Flatten(), nn.LazyLinear(5))
    model(torch.zeros(1, 3, 13, 11))
    ticket = prune(model, "magnitude", density=0.2, rounds=1)
    exported = export(model, ticket, to="csr")
    assert isinstance(exported[0], CSRConv2d) and isinstance(exported[2], CSRConv2d)
    assert exported[0].weight._nnz() == int(ticket.masks["0.weight"].sum())
    for batch in (1, 4):
        x = torch.randn(batch, 3, 13, 11)
        torch.testing.assert_close(exported(x), masked(model, ticket.masks)(x), atol=1e-5, rtol=1e-5)
    x = torch.randn(3, 13, 11)  # unbatched, and a non-contiguous batch
    torch.testing.assert_close(exported[0](x), masked(model, ticket.masks)[0](x), atol=1e-5, rtol=1e-5)
    x = torch.randn(2, 13, 11, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(exported(x), masked(model, ticket.masks)(x), atol=1e-5, rtol=1e-5)
    assert len(calls) == (7 if choice == "c" else 0)  # 2 convs x 3 batches, and the unbatched one


def test_csr_keeps_a_grouped_conv_dense_and_says_so():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 1))
    ticket = prune(model, "magnitude", density=0.3, rounds=1)
    with pytest.warns(UserWarning, match="0 stays dense, groups=2"):
        exported = export(model, ticket, to="csr")
    assert type(exported[0]) is nn.Conv2d and exported.export_choices["0"].startswith("dense: CSR cannot compute")
    assert exported.export_choices["1"] == "csr"
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(exported(x), masked(model, ticket.masks)(x), atol=1e-5, rtol=1e-5)


def test_csr_linear_at_batch_one_with_and_without_bias():
    torch.manual_seed(0)
    weight = torch.randn(6, 5) * (torch.rand(6, 5) < 0.4)
    for bias in (torch.randn(6), None):
        x = torch.randn(1, 5)
        expected = nn.functional.linear(x, weight, bias)
        torch.testing.assert_close(CSRLinear(weight, bias)(x), expected)
        torch.testing.assert_close(CSRLinear(weight, bias)(x.expand(3, 5))[1:2], expected)


@pytest.mark.parametrize("choice", ["c", "torch"])
def test_csr_linear_on_lottery_s_kernels_or_torch_s(monkeypatch, choice):
    from lottery.sparsity import kernels

    if choice == "c" and kernels.library() is None:
        pytest.skip("no C compiler here: lottery's kernels cannot be built")
    calls = []
    real_forward, real_bound = kernels.linear_forward, kernels.bound_mv
    monkeypatch.setattr(kernels, "linear_forward", lambda *a: calls.append(1) or real_forward(*a))
    monkeypatch.setattr(kernels, "bound_mv", lambda *a: (lambda x, relu=False, mv=real_bound(*a): calls.append(1) or mv(x, relu)))
    torch.manual_seed(0)
    weight = torch.randn(30, 50) * (torch.rand(30, 50) < 0.1)
    with kernels.using(choice):
        for bias in (torch.randn(30), None):
            for batch in (1, 2, 17, 60, 70):
                x = torch.randn(batch, 50)
                torch.testing.assert_close(CSRLinear(weight, bias)(x), nn.functional.linear(x, weight, bias))
            x = torch.randn(3, 50)[1]  # one example, unbatched
            torch.testing.assert_close(CSRLinear(weight, bias)(x), nn.functional.linear(x, weight, bias))
    assert len(calls) == (12 if choice == "c" else 0)


def test_csr_linear_reads_a_replaced_weight_or_bias():
    """The C kernels' arrays are cached per weight and bias tensor: replacing either (as .to() and load do) is seen."""
    torch.manual_seed(0)
    weight = torch.randn(8, 12) * (torch.rand(8, 12) < 0.3)
    layer, x = CSRLinear(weight, torch.zeros(8)), torch.randn(1, 12)
    torch.testing.assert_close(layer(x), x @ weight.t())
    layer.bias = torch.ones(8)
    torch.testing.assert_close(layer(x), x @ weight.t() + 1)
    layer.weight = CSRLinear(2 * weight, None).weight
    torch.testing.assert_close(layer(x), 2 * x @ weight.t() + 1)
    layer = layer.to(torch.float64)  # no C kernels for float64: torch's, and the same result
    torch.testing.assert_close(layer(x.double()), 2 * x.double() @ weight.double().t() + 1)


def test_batch_size_keeps_dense_the_layers_where_csr_measures_slower(ticket_and_model, monkeypatch):
    from lottery.export import choice

    ticket, model = ticket_and_model
    exported = export(model, ticket, to="csr", batch_size=1)  # measured here: every layer chosen, and said why
    assert set(exported.export_choices) == {"fc1", "fc2", "fc3"}
    for name, how in exported.export_choices.items():
        assert how.split(" ")[0] in ("csr", "dense") and f"at batch 1, threads={torch.get_num_threads()}:" in how
        assert isinstance(getattr(exported, name), CSRLinear) == how.startswith("csr")
    calls = []

    def timed(dense, sparse, repeats):  # fc2 measured slower on CSR, the others faster
        calls.append(1)
        return (1.0, 2.0) if len(calls) == 2 else (2.0, 1.0)

    monkeypatch.setattr(choice, "pair", timed)
    exported = export(model, ticket, to="csr", batch_size=1)
    assert [type(getattr(exported, n)).__name__ for n in ("fc1", "fc2", "fc3")] == ["CSRLinear", "Linear", "CSRLinear"]
    assert exported.export_choices["fc2"].endswith(": csr 2000000.0 us, dense 1000000.0 us, 0.50x)")
    x = torch.randn(1, 20)
    torch.testing.assert_close(exported(x), masked(model, ticket.masks)(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="batch_size=4 chooses CSR or dense per layer: it goes with to='csr'"):
        export(model, ticket, to="compact", batch_size=4)


def test_batch_size_for_convs_needs_an_example_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    ticket = prune(model, "magnitude", density=0.3, rounds=1)
    with pytest.raises(ValueError, match="0 take inputs whose size depends on the image: pass example_input="):
        export(model, ticket, to="csr", batch_size=2)
    exported = export(model, ticket, to="csr", batch_size=2, example_input=torch.zeros(1, 3, 6, 6))
    assert set(exported.export_choices) == {"0", "2"}


@pytest.mark.parametrize("to", ["csr", "compact"])
def test_save_and_load_rebuild_the_export_without_unpickling(tmp_path, monkeypatch, to):
    import pickle

    from lottery.export import load, save
    from lottery.models import ConvNet

    torch.manual_seed(0)
    args = {"depth": 2, "num_classes": 3, "in_channels": 3, "image_size": 8}
    model = ConvNet(**args).eval()
    masks = prune(model, "magnitude", density=0.05, rounds=1, scope="layerwise").masks
    masks["features.0.weight"][7] = False  # a channel with no input (and a bias): compact keeps or drops it
    masks["features.2.weight"][:, 9] = False  # one feeding nothing: compact drops it
    exported = export(model, masks, to=to)
    save(exported, tmp_path / "out", init_args=args)
    described = json.loads((tmp_path / "out" / "export.json").read_text())
    assert described["to"] == to and described["model"] == {"class_path": "lottery.models.conv.ConvNet", "init_args": args}
    assert described["torch"] == torch.__version__

    def refuse(*a, **k):
        raise AssertionError("load unpickled something")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = load(tmp_path / "out")
    import lottery

    assert lottery.export.load is load and lottery.export.save is save  # `lottery.export` is the function
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(loaded(x), masked(model, masks)(x), atol=1e-5, rtol=1e-5)
    assert [type(m).__name__ for m in loaded.modules()] == [type(m).__name__ for m in exported.modules()]
    if to == "compact":
        assert loaded.features[2].in_channels == exported.features[2].in_channels < 64
    else:
        assert described["layers"]["features.0"] == {"kind": "csr-conv2d", "shape": [64, 27], "bias": True,
                                                     "nnz": int(masks["features.0.weight"].sum())}


def test_load_refuses_what_is_not_an_export(tmp_path):
    from lottery.export import ExportFormatError, load

    with pytest.raises(FileNotFoundError, match="no exported ticket in .*export.json and model.safetensors"):
        load(tmp_path)
    (tmp_path / "export.json").write_text('{"format": "onnx"}')
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(ExportFormatError, match="has format 'onnx'; this lottery reads 'lottery-export' v1"):
        load(tmp_path)


def test_compact_leaves_a_layer_whose_output_is_used_twice():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.fc(x)
            return self.out(torch.relu(h) + h)  # h also skips the relu: its units are not a chain's to remove

    torch.manual_seed(0)
    model = Skip()
    masks = all_kept(model)
    masks["fc.weight"][1] = False
    exported = export(model, masks, to="compact")
    assert exported.fc.out_features == 4 and exported.compact_removed == 0
    x = torch.randn(3, 4)
    torch.testing.assert_close(exported(x), masked(model, masks)(x))


def test_load_refuses_inconsistent_csr_arrays(tmp_path, ticket_and_model):
    from safetensors.torch import load_file, save_file

    from lottery.export import ExportFormatError, load, save

    ticket, model = ticket_and_model
    save(export(model, ticket, to="csr"), tmp_path, init_args={"sizes": [20, 64, 32, 4]})
    torch.testing.assert_close(load(tmp_path)(torch.ones(1, 20)), masked(model, ticket.masks)(torch.ones(1, 20)))
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["fc1.weight.col_indices"][0] = 10_000  # out of bounds: would read past the input
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ExportFormatError, match="tensors are inconsistent .*export the ticket again"):
        load(tmp_path)


def test_a_copied_csr_export_reads_its_own_weights(ticket_and_model):
    """The C kernels' arrays a layer binds at its first call belong to that layer: a deep copy must not read the
    original's memory (which may since have been changed or freed). (torch cannot pickle CSR tensors: an export is
    written with lottery.export.save.)"""
    ticket, model = ticket_and_model
    exported = export(model, ticket, to="csr")
    x1, x4 = torch.randn(1, 20), torch.randn(4, 20)
    expected1, expected4 = exported(x1), exported(x4)  # binds the arrays, at batch 1 and batched
    copies = [copy.deepcopy(exported)]
    with torch.no_grad():
        for layer in exported.modules():
            if isinstance(layer, CSRLinear):
                layer.weight.values().mul_(3)  # in place: the original's own arrays change
    assert not torch.allclose(exported(x1), expected1)
    for twin in copies:
        torch.testing.assert_close(twin(x1), expected1)
        torch.testing.assert_close(twin(x4), expected4)


@pytest.mark.parametrize("batch", [1, 5])
def test_a_csr_export_gives_gradients_to_its_input(ticket_and_model, batch):
    """Saliency maps and adversarial inputs need d output / d input: the C kernels have no backward, so an input
    that asks for a gradient goes through torch's kernels, which have one."""
    ticket, model = ticket_and_model
    exported, reference = export(model, ticket, to="csr"), masked(model, ticket.masks)
    x = torch.randn(batch, 20)
    exported(x.clone())  # a first call without gradients binds the batch-1 fast path
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    exported(xa).square().sum().backward()
    reference(xb).square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)


def test_the_batch_one_path_follows_the_kernels_asked_for(monkeypatch):
    from lottery.sparsity import kernels

    if kernels.library() is None:
        pytest.skip("no C compiler here: lottery's kernels cannot be built")
    calls = []
    real_bound = kernels.bound_mv
    monkeypatch.setattr(kernels, "bound_mv", lambda *a: (lambda x, relu=False, mv=real_bound(*a): calls.append(1) or mv(x, relu)))
    torch.manual_seed(0)
    weight = torch.randn(30, 50) * (torch.rand(30, 50) < 0.1)
    layer, x = CSRLinear(weight, torch.randn(30)), torch.randn(1, 50)
    with kernels.using("c"):
        layer(x), layer(x)
    with kernels.using("torch"):
        torch.testing.assert_close(layer(x), nn.functional.linear(x, weight, layer.bias))
    assert len(calls) == 2


def sequential_ticket():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    return model, prune(model, "magnitude", density=0.1, rounds=1, scope="layerwise").masks


@pytest.mark.parametrize("kernels_asked", ["auto", "torch"])
def test_a_relu_after_a_csr_linear_runs_in_its_call(monkeypatch, kernels_asked):
    from lottery.export import Chain
    from lottery.sparsity import kernels

    model, masks = sequential_ticket()
    exported, reference = export(model, masks, to="csr"), masked(model, masks)
    assert type(exported) is Chain and isinstance(exported, nn.Sequential)
    assert list(exported.state_dict()) == [k for k in model.state_dict() if not k.endswith(".weight")]
    assert exported.export_choices == {"0": "csr, with the ReLU 1 in its call", "2": "csr, with the ReLU 3 in its call",
                                       "4": "csr"}
    relu_calls = []
    real_relu = nn.ReLU.forward
    monkeypatch.setattr(nn.ReLU, "forward", lambda self, x: relu_calls.append(self) or real_relu(self, x))
    ours = {id(m) for m in exported.modules()}
    with kernels.using(kernels_asked), torch.no_grad():
        for shape in ((1, 20), (1, 20), (3, 20), (20,), (2, 5, 20)):  # batch 1 (twice: bound, then fast), batched
            x = torch.randn(*shape)
            torch.testing.assert_close(exported(x), reference(x), atol=1e-5, rtol=1e-5)
        assert not [m for m in relu_calls if id(m) in ours]  # computed in its CSRLinear's call (above: correctly)
        hook_calls = []
        exported[3].register_forward_hook(lambda *a: hook_calls.append(1))  # a ReLU with a hook runs as a module
        x = torch.randn(1, 20)
        torch.testing.assert_close(exported(x), reference(x), atol=1e-5, rtol=1e-5)
        assert [m for m in relu_calls if id(m) in ours] == [exported[3]] and hook_calls == [1]
        seen = []
        exported[0].register_forward_hook(lambda m, args, out: seen.append(out))  # sees the layer's own output
        torch.testing.assert_close(exported(x), reference(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen[0], reference[0](x), atol=1e-5, rtol=1e-5)
        assert (seen[0] < 0).any()  # before the ReLU
        with torch.enable_grad():  # a gradient to the input through the fused ReLUs, at batch 1 and batched
            for batch in (1, 3):
                xa = torch.randn(batch, 20).requires_grad_()
                xb = xa.detach().clone().requires_grad_()
                exported(xa).square().sum().backward()
                reference(xb).square().sum().backward()
                torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
        exported[1] = nn.Tanh()  # a module replaced after export: planned again
        reference[1] = nn.Tanh()
        torch.testing.assert_close(exported(x), reference(x), atol=1e-5, rtol=1e-5)


def test_the_per_layer_choice_times_a_fused_relu_on_both_sides(monkeypatch):
    """A CSR layer whose ReLU the export computes in its call is timed with that ReLU, and so is its dense twin
    (with the ReLU module after it): the choice compares what would run."""
    from lottery.export import choice

    model, masks = sequential_ticket()
    timed = {}

    def fake(dense, sparse, repeats):
        timed[len(timed)] = (dense(), sparse())
        return 2.0, 1.0

    monkeypatch.setattr(choice, "pair", fake)
    exported = export(model, masks, to="csr", batch_size=1)
    for i in (0, 1):  # layers 0 and 2, each followed by a ReLU: both sides non-negative, and equal
        dense_out, sparse_out = timed[i]
        assert (dense_out >= 0).all() and (sparse_out >= 0).all() and (dense_out == 0).any()
        torch.testing.assert_close(dense_out, sparse_out, atol=1e-5, rtol=1e-5)
    assert (timed[2][0] < 0).any()  # layer 4, the last: no ReLU after it
    assert exported.export_choices["0"].endswith(", with the ReLU 1 in its call")
