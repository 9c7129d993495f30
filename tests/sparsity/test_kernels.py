"""lottery's C kernels for the sparse path: the same products as dense ones, built once, and torch's kernels
where no compiler can build them."""

import warnings

import pytest
import torch

from lottery.sparsity import kernels
from lottery.sparsity.execution import Pattern

needs_c = pytest.mark.skipif(kernels.library() is None, reason="no C compiler here: torch's kernels are used")


def csr_of(mask: torch.Tensor):
    pattern = Pattern(mask)
    return pattern, pattern.crow, pattern.col


@needs_c
@pytest.mark.parametrize("batch", [1, 5, 16, 17, 33, 60, 64, 100, 130, 1000])
def test_the_products_equal_dense_ones(batch):
    torch.manual_seed(batch)
    mask = torch.rand(37, 50) < 0.2
    mask[3] = False  # a row without survivors
    weight = torch.randn(37, 50) * mask
    bias, x, gy = torch.randn(37), torch.randn(batch, 50), torch.randn(batch, 37)
    pattern, crow, col = csr_of(mask)
    values = weight[mask]
    ld = kernels.padded(batch)
    assert ld >= batch and ld % 16 == 0
    xt = kernels.transpose_pad(x, ld)
    assert torch.equal(xt[:, :batch], x.t()) and not xt[:, batch:].any()  # padded with zeros
    y = kernels.csr_mm(crow, col, values, bias, xt)[:, :batch].t()
    d = {"x": x.double(), "w": weight.double(), "gy": gy.double()}  # references in float64: summation order aside
    tol = {"atol": 1e-5 * batch ** 0.5, "rtol": 1e-5, "check_dtype": False}
    torch.testing.assert_close(y, d["x"] @ d["w"].t() + bias.double(), **tol)
    assert torch.equal(y[:, 3], bias[3].expand(batch))  # the empty row is its bias
    gyt = kernels.transpose_pad(gy, ld)
    torch.testing.assert_close(kernels.csr_sampled(crow, col, gyt, xt), (d["gy"].t() @ d["x"])[mask], **tol)
    vt = values[pattern.t_perm]
    gx = kernels.csr_mm(pattern.t_crow, pattern.t_col, vt, None, gyt)[:, :batch].t()
    torch.testing.assert_close(gx, d["gy"] @ d["w"], **tol)


@needs_c
def test_transpose_pad_reads_any_strides():
    x = torch.randn(40, 30)[::2, 5:25]  # rows skipped, columns offset
    assert not x.is_contiguous()
    assert torch.equal(kernels.transpose_pad(x, 32)[:, :20], x.t())
    xt = x.t()  # a transposed view
    assert torch.equal(kernels.transpose_pad(xt, 32)[:, :20], xt.t())
    wide = torch.randn(60, 300)  # row-major, as a batch arrives: 8x8 blocks and the rows and columns left over
    assert torch.equal(kernels.transpose_pad(wide[:57, :299], 64), torch.cat([wide[:57, :299].t(), torch.zeros(299, 7)], 1))
    major = torch.randn(300, 64)[:, :60].t()  # feature-major (a transposed view): row copies
    assert torch.equal(kernels.transpose_pad(torch.relu(major), 64), torch.cat([torch.relu(major).t(), torch.zeros(300, 4)], 1))


@needs_c
def test_no_survivors_at_all():
    mask = torch.zeros(8, 6, dtype=torch.bool)
    _, crow, col = csr_of(mask)
    xt = kernels.transpose_pad(torch.randn(4, 6), 16)
    assert torch.equal(kernels.csr_mm(crow, col, torch.zeros(0), torch.ones(8), xt), torch.ones(8, 16))
    assert kernels.csr_sampled(crow, col, kernels.transpose_pad(torch.randn(4, 8), 16), xt).numel() == 0


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """The kernels module as in a new process, with its build cache in tmp_path."""
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_tried", False)
    monkeypatch.setattr(kernels, "_env", None)  # LOTTERY_SPARSE_KERNELS read again
    monkeypatch.setenv("LOTTERY_CACHE", str(tmp_path))
    monkeypatch.delenv("LOTTERY_SPARSE_KERNELS", raising=False)
    return tmp_path


@needs_c
def test_built_once_into_the_cache_then_loaded(fresh, monkeypatch):
    assert kernels.library() is not None
    built = list((fresh / "kernels").glob("csr_kernels-*.so"))
    assert len(built) == 1 and not list((fresh / "kernels").glob("tmp*"))  # renamed into place, nothing left over
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_tried", False)
    monkeypatch.setattr(kernels.subprocess, "run", lambda *a, **k: pytest.fail("compiled again"))
    assert kernels.library() is not None and kernels.name() == "lottery's C kernels"


def test_without_a_compiler_torch_kernels_are_used_and_said(fresh, monkeypatch):
    from torch import nn

    from lottery.sparsity.execution import make_sparse

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(kernels.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="no C compiler .* torch's CSR kernels, which are slower; install one"):
        assert kernels.library() is None
    assert kernels.name() == "torch's CSR kernels"
    torch.manual_seed(0)
    layer, mask = nn.Linear(20, 10), torch.rand(10, 20) < 0.3
    with torch.no_grad():
        layer.weight.mul_(mask)
    x = torch.randn(4, 20)
    expected = layer(x)
    make_sparse(layer, mask)
    torch.testing.assert_close(layer(x), expected)  # still runs, on torch's kernels
    monkeypatch.setenv("LOTTERY_SPARSE_KERNELS", "c")
    monkeypatch.setattr(kernels, "_env", None)
    with pytest.raises(RuntimeError, match="LOTTERY_SPARSE_KERNELS=c but lottery's C kernels could not be built"):
        kernels.library()


def test_a_compiler_that_fails_is_said_with_its_message(fresh, monkeypatch):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with pytest.warns(UserWarning, match="could not build csr_kernels.c"):
        assert kernels.library() is None
    assert not list((fresh / "kernels").glob("*.so"))  # no half-built library left to load later


def test_torch_kernels_on_request_and_a_bad_choice_refused(fresh, monkeypatch):
    monkeypatch.setenv("LOTTERY_SPARSE_KERNELS", "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.library() is None and kernels.name() == "torch's CSR kernels"
    assert not (fresh / "kernels").exists()  # nothing was built
    monkeypatch.setenv("LOTTERY_SPARSE_KERNELS", "fast")
    monkeypatch.setattr(kernels, "_env", None)
    with pytest.raises(ValueError, match="LOTTERY_SPARSE_KERNELS='fast': use one of auto, c, torch"):
        kernels.library()


def test_using_chooses_the_kernels_for_a_block(fresh, monkeypatch):
    monkeypatch.setenv("LOTTERY_SPARSE_KERNELS", "c")
    assert kernels.choice() == "c"
    monkeypatch.setenv("LOTTERY_SPARSE_KERNELS", "torch")  # read once, at first use
    with kernels.using("torch"):
        assert kernels.choice() == "torch" and kernels.library() is None  # over the environment
        with kernels.using("auto"):
            assert kernels.choice() == "auto"
        assert kernels.choice() == "torch"
    assert kernels.choice() == "c"
    with pytest.raises(ValueError, match="kernels='gpu': use one of auto, c, torch"):
        with kernels.using("gpu"):
            pass


@needs_c
def test_an_unwritable_cache_falls_back_to_the_temporary_folder(fresh, monkeypatch):
    blocked = fresh / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("LOTTERY_CACHE", str(blocked))
    monkeypatch.setattr(kernels.tempfile, "gettempdir", lambda: str(fresh / "tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.library() is not None
    assert len(list((fresh / "tmp" / "lottery-kernels").glob("csr_kernels-*.so"))) == 1


def test_a_missing_compiler_or_a_broken_library_is_said_not_raised(fresh, monkeypatch):
    monkeypatch.setenv("CC", str(fresh / "no-such-cc") + " -O1")  # $CC may carry arguments
    with pytest.warns(UserWarning, match="no-such-cc -O1 could not build csr_kernels.c"):
        assert kernels.library() is None
    monkeypatch.setattr(kernels, "_tried", False)
    broken = fresh / "broken.so"
    broken.write_text("not a library")
    monkeypatch.setattr(kernels, "_build", lambda: broken)
    with pytest.warns(UserWarning, match="could not load .*broken.so .* delete it to have it built again"):
        assert kernels.library() is None


@needs_c
@pytest.mark.parametrize("shape", [
    dict(cin=64, cout=16, k=3, s=1, p=1, d=1, hw=(16, 16)),
    dict(cin=3, cout=8, k=5, s=2, p=2, d=1, hw=(13, 11)),
    dict(cin=4, cout=6, k=3, s=3, p=0, d=2, hw=(17, 9)),
    dict(cin=5, cout=7, k=(3, 1), s=(1, 2), p=(2, 0), d=(1, 3), hw=(10, 12)),
    dict(cin=2, cout=3, k=3, s=1, p=4, d=1, hw=(3, 3)),  # padding wider than the image
])
def test_the_direct_sparse_convolution_equals_conv2d(shape):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(shape["cin"], shape["cout"], shape["k"], stride=shape["s"], padding=shape["p"],
                           dilation=shape["d"])
    mask = torch.rand_like(conv.weight) < 0.3
    mask[0] = False  # an output channel without survivors: its bias
    weight = conv.weight.detach() * mask
    pattern = Pattern(mask.reshape(shape["cout"], -1))
    x = torch.randn(2, shape["cin"], *shape["hw"])
    for bias in (conv.bias.detach(), None):
        expected = torch.nn.functional.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)
        y = kernels.sparse_conv2d(x, pattern.crow, pattern.col, weight[mask].contiguous(), bias, shape["cout"],
                                  expected.shape[-2:], conv.kernel_size, conv.stride, conv.padding, conv.dilation)
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


@needs_c
@pytest.mark.parametrize("batch", [1, 17, 60, 130])
@pytest.mark.parametrize("with_bias", [True, False])
def test_the_fused_linear_calls_equal_dense_ones(batch, with_bias):
    """linear_forward and linear_backward (the sparse path's two calls) against float64 references: only the
    gradients asked for, from a gradient of any strides (here an expanded one)."""
    torch.manual_seed(batch)
    mask = torch.rand(37, 50) < 0.2
    mask[5] = False
    weight = torch.randn(37, 50) * mask
    bias = torch.randn(37) if with_bias else None
    x, gy = torch.randn(batch, 50), torch.randn(batch, 37)
    pattern = Pattern(mask)
    values = weight[mask]
    xt, y = kernels.linear_forward(pattern.crow, pattern.col, values, bias, x)
    tol = {"atol": 1e-5 * batch ** 0.5, "rtol": 1e-5, "check_dtype": False}
    ref = x.double() @ weight.double().t() + (0 if bias is None else bias.double())
    torch.testing.assert_close(y, ref, **tol)
    assert y.is_contiguous()
    args = (pattern.crow, pattern.col, pattern.t_crow, pattern.t_col, pattern.t_perm, values, xt)
    gx, gw, gb = kernels.linear_backward(*args, gy, (True, True, True))
    torch.testing.assert_close(gx, gy.double() @ weight.double(), **tol)
    torch.testing.assert_close(gw, (gy.double().t() @ x.double())[mask], **tol)
    torch.testing.assert_close(gb, gy.double().sum(0), **tol)
    ones = torch.ones(1, 1).expand(batch, 37)  # the gradient of y.sum(): strides (0, 0)
    gx, gw, gb = kernels.linear_backward(*args, ones, (False, True, False))
    assert gx is None and gb is None
    torch.testing.assert_close(gw, x.double().sum(0).expand(37, 50)[mask], **tol)


@needs_c
@pytest.mark.parametrize("with_bias", [True, False])
def test_the_bound_matrix_vector_product_equals_dense(with_bias):
    """bound_mv (batch-1 inference) on rows of every kind of length: empty, shorter than the gathered blocks, at
    and around the 32 survivors from which a row is gathered 8 at a time, and long; with its ReLU and without."""
    torch.manual_seed(0)
    lengths = [0, 1, 7, 8, 9, 31, 32, 33, 40, 47, 100, 300]
    mask = torch.zeros(len(lengths), 300, dtype=torch.bool)
    for row, n in enumerate(lengths):
        mask[row, torch.randperm(300)[:n]] = True
    weight = torch.randn(len(lengths), 300) * mask
    bias = torch.randn(len(lengths)) if with_bias else None
    pattern = Pattern(mask)
    x = torch.randn(1, 300)
    ref = x.double() @ weight.double().t() + (0 if bias is None else bias.double())
    mv = kernels.bound_mv(pattern.crow, pattern.col, weight[mask], bias)
    for relu in (False, True):
        y = mv(x, relu)
        assert y.shape == (1, len(lengths)) and y.dtype == torch.float32
        torch.testing.assert_close(y, ref.clamp(min=0) if relu else ref, atol=1e-5, rtol=1e-5, check_dtype=False)
    assert (ref < 0).any() and (ref > 0).any()  # the ReLU had something to do


CONV_GEOMETRIES = [  # in, out, kernel, stride, padding, dilation, H x W: stride 1 on padded planes, else by rows
    (3, 8, 3, 1, 1, 1, (9, 11)), (3, 4, (3, 2), 1, (2, 1), (2, 1), (10, 9)), (6, 7, 1, 1, 0, 1, (8, 8)),
    (4, 5, (3, 2), (2, 1), (1, 0), (1, 2), (12, 13)), (2, 3, 5, 3, 2, 1, (17, 16)),
]


@needs_c
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_the_conv_kernels_equal_dense_ones(geometry):
    """sparse_conv2d and its two gradients against float64 references: output, input gradient, and the weight
    gradient at the survivors (a row of the weight without survivors included)."""
    c, o, k, stride, padding, dilation, size = geometry
    torch.manual_seed(o)
    conv = torch.nn.Conv2d(c, o, k, stride, padding, dilation)
    mask = torch.rand(conv.weight.shape) < 0.3
    mask[1] = False
    weight, bias = conv.weight.detach() * mask, conv.bias.detach()
    x = torch.randn(2, c, *size, dtype=torch.float64, requires_grad=True)
    w64 = weight.double().requires_grad_()
    y = torch.nn.functional.conv2d(x, w64, bias.double(), conv.stride, conv.padding, conv.dilation)
    gy = torch.randn_like(y)
    y.backward(gy)
    pattern = Pattern(mask.reshape(o, -1))
    values = weight.reshape(-1)[pattern.flat].contiguous()
    geo = (conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    out = kernels.sparse_conv2d(x.detach().float(), pattern.crow, pattern.col, values, bias, o, y.shape[2:], *geo)
    gx, gw = kernels.sparse_conv2d_grads(x.detach().float(), gy.float(), pattern.crow, pattern.col, values, *geo,
                                         (True, True))
    tol = dict(atol=1e-4, rtol=1e-4, check_dtype=False)
    torch.testing.assert_close(out, y, **tol)
    torch.testing.assert_close(gx, x.grad, **tol)
    torch.testing.assert_close(gw, w64.grad.reshape(-1)[pattern.flat], **tol)


@needs_c
def test_the_portable_build_gives_the_same_products(fresh, monkeypatch):
    """Built without -march=native (no AVX2 on x86-64: the blocked transpose, the 8-survivor weight gradient and the
    convs' vector rows are left out), the kernels give the same products."""
    monkeypatch.setattr(kernels, "FLAGS", ("-O3", "-shared", "-fPIC"))
    assert kernels.library() is not None
    for batch in (1, 17, 60, 130):
        test_the_products_equal_dense_ones(batch)
        for with_bias in (True, False):
            test_the_fused_linear_calls_equal_dense_ones(batch, with_bias)
    for with_bias in (True, False):
        test_the_bound_matrix_vector_product_equals_dense(with_bias)
    test_transpose_pad_reads_any_strides()
    for geometry in CONV_GEOMETRIES:  # the convs' rows without AVX2's masked tails, dots without its four chains
        test_the_conv_kernels_equal_dense_ones(geometry)
