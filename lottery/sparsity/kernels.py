"""lottery's C kernels for the sparse path (csr_kernels.c), compiled on first use with the machine's C compiler.

torch's CPU CSR product gathers one input row per survivor without prefetching it, and is latency-bound: on
LeNet-300-100's 784x300 layer at 3.6% density it runs at ~17 GFLOP/s against ~78 for the dense product. The kernels
here prefetch the rows a few survivors ahead (see the C source). They are built once per source, compiler flags and
CPU into `~/.cache/lottery/kernels` (or `$LOTTERY_CACHE`), written atomically, and loaded with ctypes: nothing is
compiled at install time, and without a C compiler the sparse path keeps torch's kernels, with a warning saying so.
`LOTTERY_SPARSE_KERNELS=torch` chooses torch's kernels anyway (e.g. to compare them).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("csr_kernels.c")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
CHOICES = ("auto", "c", "torch")
_lib: ctypes.CDLL | None = None
_tried = False
_forced: str | None = None
_env: str | None = None
generation = 0  # bumped whenever the kernels asked for may change (`using`): a cached choice is checked against it


def choice() -> str:
    """The kernels asked for (`using`, else `LOTTERY_SPARSE_KERNELS`, read at first use): auto (C where it builds),
    c (C or an error), torch."""
    global _env
    if _forced is not None:
        return _forced
    if _env is None:  # once, not at every product (cProfile counted 26 lookups a training step)
        asked = os.environ.get("LOTTERY_SPARSE_KERNELS", "auto").strip().lower() or "auto"
        if asked not in CHOICES:
            raise ValueError(f"LOTTERY_SPARSE_KERNELS={asked!r}: use one of {', '.join(CHOICES)}")
        _env = asked
    return _env


@contextmanager
def using(kernels: str) -> Iterator[None]:
    """Within this block the sparse path uses these kernels (auto, c or torch), whatever the environment says."""
    global _forced, generation
    if kernels not in CHOICES:
        raise ValueError(f"kernels={kernels!r}: use one of {', '.join(CHOICES)}")
    saved, _forced = _forced, kernels
    generation += 1
    try:
        yield
    finally:
        _forced = saved
        generation += 1


def _cpu_id() -> str:
    """What the compiled code depends on besides the source: -march=native targets this CPU's instruction set."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                flags += line
    except OSError:
        pass
    return f"{platform.machine()} {platform.system()} {flags}"


def _cache_dirs() -> list[Path]:
    """Where a built library may go: the user's cache, then the temporary folder (a read-only or absent home)."""
    root = os.environ.get("LOTTERY_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "lottery")
    try:
        first = [Path(root).expanduser() / "kernels"]
    except RuntimeError:  # no home to expand ~ into
        first = []
    return [*first, Path(tempfile.gettempdir()) / "lottery-kernels"]


def _build() -> Path | None:
    """The compiled library's path (compiled now if not yet), or None where no C compiler can build it."""
    cc = os.environ.get("CC")
    compiler = shlex.split(cc) if cc else [shutil.which(c) for c in ("cc", "gcc", "clang") if shutil.which(c)][:1]
    if not compiler:
        warnings.warn("lottery: no C compiler (cc, gcc, clang or $CC) found, so sparse layers run on torch's CSR "
                      "kernels, which are slower; install one (e.g. apt-get install gcc) for lottery's own",
                      stacklevel=3)
        return None
    source = SOURCE.read_bytes()
    errors = []
    for flags in (FLAGS, tuple(f for f in FLAGS if f != "-march=native")):  # some compilers lack -march=native
        key = hashlib.sha256(source + " ".join((*compiler, *flags, _cpu_id())).encode()).hexdigest()[:16]
        for folder in _cache_dirs():
            target = folder / f"csr_kernels-{key}.so"
            if target.exists():
                return target
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
            except OSError as e:  # not writable: the next folder
                errors.append(f"{folder}: {e}")
                continue
            os.close(fd)
            try:
                done = subprocess.run([*compiler, *flags, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                                      timeout=120)
                said = done.stderr.strip()[-500:] if done.returncode else None
            except (OSError, subprocess.TimeoutExpired) as e:
                said = str(e)
            if said is None:
                os.replace(tmp, target)  # atomic: another process never loads a half-written library
                return target
            os.unlink(tmp)
            errors.append(said)
            break  # the compiler failed: another folder will not help, other flags might
    warnings.warn(f"lottery: {' '.join(compiler)} could not build {SOURCE.name}, so sparse layers run on torch's "
                  f"CSR kernels, which are slower. The compiler said: {errors[-1] if errors else '?'}", stacklevel=3)
    return None


def library() -> ctypes.CDLL | None:
    """The loaded C kernels, or None where torch's are to be used (asked for, or no compiler)."""
    global _lib, _tried
    asked = choice()
    if asked == "torch":
        return None
    if not _tried:
        _tried = True
        path = _build()
        try:
            lib = None if path is None else ctypes.CDLL(str(path))
        except OSError as e:  # e.g. a library another machine built into a shared cache
            warnings.warn(f"lottery: could not load {path} ({e}), so sparse layers run on torch's CSR kernels; "
                          "delete it to have it built again", stacklevel=2)
            lib = None
        if lib is not None:
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            for width in (16, 64):
                getattr(lib, f"lottery_csr_mm_{width}").argtypes = [i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64]
                getattr(lib, f"lottery_csr_sampled_{width}").argtypes = [i64, i64, ptr, ptr, ptr, ptr, ptr, i64]
            lib.lottery_transpose_pad.argtypes = [i64, i64, ptr, i64, i64, ptr, i64]
            lib.lottery_gather.argtypes = lib.lottery_scatter.argtypes = [i64, ptr, ptr, ptr]
            lib.lottery_csr_mv.argtypes = [ptr, ptr, ptr, i64]
            lib.lottery_sparse_conv2d.argtypes = [i64] * 15 + [ptr] * 6
            lib.lottery_sparse_conv2d_grad_input.argtypes = [i64] * 15 + [ptr] * 5
            lib.lottery_sparse_conv2d_grad_weight.argtypes = [i64] * 15 + [ptr] * 5
            lib.lottery_linear_forward.argtypes = [i64, i64, ptr, i64, i64, ptr, i64, i64, i64, ptr, ptr, ptr, ptr, ptr]
            lib.lottery_linear_backward.argtypes = [i64, i64, i64, ptr, i64, i64, i64, i64, ptr, ptr, ptr, ptr, ptr,
                                                    ptr, ptr, ptr, ptr, ptr]
            _lib = lib
    if _lib is None and asked == "c":
        raise RuntimeError("LOTTERY_SPARSE_KERNELS=c but lottery's C kernels could not be built (see the warning "
                           "above); install a C compiler, or use LOTTERY_SPARSE_KERNELS=auto or torch")
    return _lib


def name() -> str:
    """Which kernels the sparse path uses on CPU, in words."""
    return "lottery's C kernels" if library() is not None else "torch's CSR kernels"


def usable(*tensors: Tensor) -> bool:
    """True where the C kernels apply: float32 on CPU (anything else runs on torch's kernels)."""
    for t in tensors:
        if t.dtype != torch.float32 or not t.is_cpu:  # is_cpu: no device object made
            return False
    return library() is not None


def padded(batch: int) -> int:
    """The row length of the transposed activations: the batch rounded up to 64 floats (16 for small batches)."""
    return -(-batch // 64) * 64 if batch > 32 else -(-batch // 16) * 16


def transpose_pad(x: Tensor, ld: int) -> Tensor:
    """xᵀ (features × ld, zero-padded): one contiguous row per feature, from a 2-D float32 x of any strides."""
    n, m = x.shape
    out = torch.empty(m, ld, dtype=torch.float32)
    _lib.lottery_transpose_pad(n, m, x.data_ptr(), x.stride(0), x.stride(1), out.data_ptr(), ld)
    return out


def csr_mm(crow: Tensor, col: Tensor, values: Tensor, bias: Tensor | None, xt: Tensor) -> Tensor:
    """W xt (+ bias per row) for W in CSR (int64 crow/col, float32 values) and xt from `transpose_pad`."""
    rows, ld = crow.numel() - 1, xt.shape[1]
    assert values.is_contiguous() and xt.is_contiguous() and (bias is None or bias.is_contiguous())
    out = torch.empty(rows, ld, dtype=torch.float32)
    fn = _lib.lottery_csr_mm_64 if ld % 64 == 0 else _lib.lottery_csr_mm_16
    fn(rows, col.numel(), crow.data_ptr(), col.data_ptr(), values.data_ptr(), None,
       None if bias is None else bias.data_ptr(), xt.data_ptr(), out.data_ptr(), ld, ld)
    return out


def linear_forward(crow: Tensor, col: Tensor, values: Tensor, bias: Tensor | None, x: Tensor) -> tuple[Tensor, Tensor]:
    """A sparse Linear layer's forward in one C call: (xt, y), with xt = `transpose_pad(x)` for the backward pass and
    y = x Wᵀ + bias ([batch, rows], contiguous). `values` and `bias` contiguous float32, x 2-D float32 of any
    strides."""
    n, m = x.shape
    rows, ld = crow.numel() - 1, padded(n)
    xt = torch.empty(m, ld, dtype=torch.float32)
    y = torch.empty(n, rows, dtype=torch.float32)
    if _lib.lottery_linear_forward(n, m, x.data_ptr(), x.stride(0), x.stride(1), xt.data_ptr(), ld, rows,
                                   col.numel(), crow.data_ptr(), col.data_ptr(), values.data_ptr(),
                                   None if bias is None else bias.data_ptr(), y.data_ptr()):
        raise MemoryError(f"lottery's C kernels: no memory for a [{rows}, {ld}] scratch array")
    return xt, y


def linear_backward(crow: Tensor, col: Tensor, t_crow: Tensor, t_col: Tensor, t_perm: Tensor, values: Tensor,
                    xt: Tensor, grad_y: Tensor, want: tuple[bool, bool, bool]) -> tuple[Tensor | None, ...]:
    """Its backward pass in one C call: the gradients (input, weight at survivors in CSR order, bias) that `want`
    asks for, None for the others; t_crow, t_col and t_perm are the transpose's CSR and its survivors' places in
    `values`."""
    n, rows = grad_y.shape
    cols, ld = t_crow.numel() - 1, xt.shape[1]
    gx = torch.empty(n, cols, dtype=torch.float32) if want[0] else None
    gw = torch.empty(col.numel(), dtype=torch.float32) if want[1] else None
    gb = torch.empty(rows, dtype=torch.float32) if want[2] else None
    if _lib.lottery_linear_backward(n, rows, cols, grad_y.data_ptr(), grad_y.stride(0), grad_y.stride(1), ld,
                                    col.numel(), crow.data_ptr(), col.data_ptr(), xt.data_ptr(),
                                    None if gw is None else gw.data_ptr(), t_crow.data_ptr(), t_col.data_ptr(),
                                    t_perm.data_ptr(), values.data_ptr(), None if gx is None else gx.data_ptr(),
                                    None if gb is None else gb.data_ptr()):
        raise MemoryError(f"lottery's C kernels: no memory for [{rows}, {ld}] scratch arrays")
    return gx, gw, gb


class _CSR(ctypes.Structure):
    """csr_kernels.c's `struct lottery_csr`: a CSR matrix's arrays, bound once."""
    _fields_ = [("rows", ctypes.c_int64), ("crow", ctypes.c_void_p), ("col", ctypes.c_void_p),
                ("vals", ctypes.c_void_p), ("bias", ctypes.c_void_p)]


def bound_mv(crow: Tensor, col: Tensor, values: Tensor, bias: Tensor | None) -> Callable[[Tensor, bool], Tensor]:
    """W x + bias for W in CSR, its arrays bound once: a function of one contiguous float32 example [1, in] (and
    `relu`: then max(0, ·)) giving [1, out] (batch-1 inference, where each microsecond of a small layer's call
    counts)."""
    assert crow.is_contiguous() and col.is_contiguous() and values.is_contiguous()
    assert bias is None or bias.is_contiguous()
    rows, fn = crow.numel() - 1, _lib.lottery_csr_mv
    col = col.to(torch.int32)  # the kernel reads int32 column indices (a Linear has far fewer than 2^31 inputs)
    bound = _CSR(rows, crow.data_ptr(), col.data_ptr(), values.data_ptr(), None if bias is None else bias.data_ptr())
    where = ctypes.addressof(bound)

    def mv(x: Tensor, relu: bool = False) -> Tensor:
        out = torch.empty(1, rows, dtype=torch.float32)  # sizes as arguments: a tuple or a Size parses slower
        fn(where, x.data_ptr(), out.data_ptr(), relu)
        return out

    mv.arrays = (crow, col, values, bias, bound)  # kept alive as long as the function is
    return mv


def sparse_conv2d(x: Tensor, crow: Tensor, col: Tensor, values: Tensor, bias: Tensor | None, out_channels: int,
                  size: Sequence[int], kernel_size: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """conv2d(x, W, bias) (groups 1, zero padding) for W as CSR [out, in·kh·kw], a contiguous float32 NCHW x and
    the output's height and width `size`."""
    assert x.is_contiguous() and values.is_contiguous() and (bias is None or bias.is_contiguous())
    n, c, h, w = x.shape
    out = torch.empty(n, out_channels, *size, dtype=torch.float32)
    _lib.lottery_sparse_conv2d(n, c, h, w, out_channels, *size, *kernel_size, *stride, *padding, *dilation,
                               crow.data_ptr(), col.data_ptr(), values.data_ptr(),
                               None if bias is None else bias.data_ptr(), x.data_ptr(), out.data_ptr())
    return out


def sparse_conv2d_grads(x: Tensor, grad_y: Tensor, crow: Tensor, col: Tensor, values: Tensor,
                        kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                        dilation: tuple[int, int], want: tuple[bool, bool]) -> tuple[Tensor | None, Tensor | None]:
    """The gradients of `sparse_conv2d` that `want` asks for: (input [n, C, H, W], weight at the survivors in CSR
    order), None for the other; x and grad_y contiguous float32."""
    assert x.is_contiguous() and grad_y.is_contiguous() and values.is_contiguous()
    n, c, h, w = x.shape
    sizes = (n, c, h, w, grad_y.shape[1], grad_y.shape[2], grad_y.shape[3], *kernel_size, *stride, *padding,
             *dilation)
    gx = gw = None
    if want[0]:
        gx = torch.empty(n, c, h, w, dtype=torch.float32)
        _lib.lottery_sparse_conv2d_grad_input(*sizes, crow.data_ptr(), col.data_ptr(), values.data_ptr(),
                                              grad_y.data_ptr(), gx.data_ptr())
    if want[1]:
        gw = torch.empty(col.numel(), dtype=torch.float32)
        _lib.lottery_sparse_conv2d_grad_weight(*sizes, crow.data_ptr(), col.data_ptr(), x.data_ptr(),
                                               grad_y.data_ptr(), gw.data_ptr())
    return gx, gw


def csr_sampled(crow: Tensor, col: Tensor, gyt: Tensor, xt: Tensor) -> Tensor:
    """(gyt xtᵀ) at W's survivors only, in CSR order: the weight gradient of y = W x at the survivors."""
    ld = xt.shape[1]
    assert gyt.is_contiguous() and xt.is_contiguous() and gyt.shape[1] == ld
    out = torch.empty(col.numel(), dtype=torch.float32)
    fn = _lib.lottery_csr_sampled_64 if ld % 64 == 0 else _lib.lottery_csr_sampled_16
    fn(crow.numel() - 1, col.numel(), crow.data_ptr(), col.data_ptr(), gyt.data_ptr(), xt.data_ptr(),
       out.data_ptr(), ld)
    return out


def gather(src: Tensor, index: Tensor) -> Tensor:
    """src.view(-1)[index] for a contiguous float32 src and an int64 index."""
    assert src.is_contiguous()
    out = torch.empty(index.numel(), dtype=torch.float32)
    _lib.lottery_gather(index.numel(), index.data_ptr(), src.data_ptr(), out.data_ptr())
    return out


def scatter(dst: Tensor, index: Tensor, src: Tensor) -> None:
    """dst.view(-1)[index] = src, in place, for contiguous float32 tensors and an int64 index."""
    assert dst.is_contiguous() and src.is_contiguous() and src.numel() == index.numel()
    _lib.lottery_scatter(index.numel(), index.data_ptr(), src.data_ptr(), dst.data_ptr())
