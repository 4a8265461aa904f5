"""Fused CPU kernels for the t2i cross-attention: built on first use, plain torch when they cannot be.

Scoring words against regions (direction "t2i") costs one matmul for the raw scores s, a batched
matmul with each image's Gram matrix G, and element-wise work on a 4-D tensor: LeakyReLU, a norm
over the words, exp, and two sums over the regions. In torch that work is about ten passes over
memory and, with G e, takes as long as the matmul itself; ``csrc/xattn_cpu.c`` does it in two
passes with the caption axis innermost, so that the compiler vectorises every loop, and forms
e^T G e from G's upper triangle (half the multiply-adds). ``blocked.py`` runs them for the
implementations "fused" and "auto" of ``hat_min.scan`` and its torch formulas where they cannot run
(GPU, autograd, half precision, lambda > 20, no C compiler, torch not on GNU OpenMP); the tests
compare both with ``hat_min.scan.scan_eager``.

The C file (plain C99 + OpenMP, no Python or torch headers) compiles with the system's compiler
(``$CC``, else ``cc``) in well under a second, into ``~/.cache/hat_min/kernels`` (or
``$HAT_MIN_CACHE/kernels``), named by a hash of the source, flags, compiler, CPU and runtime, and
is linked against the OpenMP runtime torch has loaded, so that both share one thread pool.
``status()`` says whether they can be used and why not; ``HATConfig.scan_implementation="blocked"``
scores without them.

    s   = images (bi * R, D) @ words (w * bc, D)^T          (bi, R, w, bc)   torch.mm
    e   = exp(lambda * a / ||a||_words), a = LeakyReLU(s)   (bi, R, w, bc)   xattn_t2i_attention
    dot = sum_r e s                                         (bi, w, bc)      (same pass)
    out = mean over real words of dot / (sqrt(e^T G e) |word|)   (bi, bc)    xattn_t2i_cosines
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..scan import EPS, LEAKY_SLOPE

SOURCE = Path(__file__).resolve().parent / "csrc" / "xattn_cpu.c"
# exp(lambda * a) with |a| <= 1 fits float32 without subtracting the maximum up to lambda = 20 (exp(2 * 20)):
# the kernels' formulas hold there, and the torch formulas subtract the maximum only above it
MAX_UNSHIFTED_LAMBDA = 20.0
MAX_REGIONS, ROWS = 1024, 8  # as in the C file: a (regions, 32) tile on the stack; rows of G per pass
_status = "not loaded yet"


def unusable(images: Tensor, captions: Tensor, lambda_softmax: float, inplace: bool) -> str | None:
    """Why the fused kernels cannot score these features, or None when they can (float32 on a CPU, no
    autograd, lambda <= 20, at most ``MAX_REGIONS`` regions, the library built)."""
    if not inplace:
        return "autograd records the scoring (training)"
    if lambda_softmax > MAX_UNSHIFTED_LAMBDA or images.shape[1] > MAX_REGIONS:
        return f"lambda above {MAX_UNSHIFTED_LAMBDA:g} or more than {MAX_REGIONS} regions"
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (images, captions)):
        return "they take float32 features on a CPU"
    return None if library() is not None else _status


def usable(images: Tensor, captions: Tensor, lambda_softmax: float, inplace: bool) -> bool:
    """True when the fused kernels can score these float32 CPU features (``unusable`` says why not)."""
    return unusable(images, captions, lambda_softmax, inplace) is None


def status() -> str:
    """One line: whether the fused CPU kernels can be used here, and if not, why."""
    library()
    return _status


def scratch_size(images: int, regions: int, words: int, captions: int) -> int:
    """Floats of scratch that ``t2i_block`` needs for a block of that many images, regions, words, captions."""
    return (regions + 1) * images * words * captions


def upper_gram(gram: Tensor) -> Tensor:
    """(N, R, R) Gram matrices -> (N, ceil(R / 8) * 8, R) in the layout of the cosine kernel.

    e^T G e = 2 e^T U e for U the upper triangle of G with its diagonal halved: the kernel does half
    the products of G e, 8 rows of U at a time; block b holds U[8b:8b+8, :] transposed, (R, 8)."""
    n, r, _ = gram.shape
    blocks = -(-r // ROWS)
    upper = gram.new_zeros(n, blocks * ROWS, r)
    upper[:, :r] = torch.triu(gram)
    upper[:, :r].diagonal(dim1=1, dim2=2).mul_(0.5)
    return upper.view(n, blocks, ROWS, r).transpose(2, 3).reshape(n, blocks * ROWS, r)  # (N, blocks * 8, R)


def t2i_block(images: Tensor, words: Tensor, gram_upper: Tensor, word_norms: Tensor, counts: Tensor,
              lambda_softmax: float, out: Tensor, scratch: Tensor) -> None:
    """Words attend to regions: (bi, R, D) images x (w, bc, D) word-major captions -> ``out`` (bi, bc).

    ``gram_upper`` (bi, ., R) from ``upper_gram``, ``word_norms`` (w, bc) zero on padding, ``counts`` (bc,)
    real words; ``out`` may be a view with any row stride; ``scratch`` holds ``scratch_size(bi, R, w, bc)`` floats.
    """
    lib = library()
    n_i, n_r, dim = images.shape
    n_w, n_c, _ = words.shape
    size = n_i * n_r * n_w * n_c
    if (scratch.numel() < scratch_size(n_i, n_r, n_w, n_c) or n_r > MAX_REGIONS or out.shape != (n_i, n_c)
            or (n_c > 1 and out.stride(1) != 1) or gram_upper.shape != (n_i, -(-n_r // ROWS) * ROWS, n_r)
            or not gram_upper.is_contiguous()):
        raise ValueError(f"t2i_block: {n_i} images of {n_r} regions (at most {MAX_REGIONS}) x {n_c} captions of "
                         f"{n_w} words: scratch of {scratch.numel()} floats, out {tuple(out.shape)}, gram_upper "
                         f"{tuple(gram_upper.shape)} (contiguous: {gram_upper.is_contiguous()})")
    s = torch.mm(images.reshape(n_i * n_r, dim), words.reshape(n_w * n_c, dim).T,
                 out=scratch[:size].view(n_i * n_r, n_w * n_c))  # (bi * R, w * bc) raw scores
    dot = scratch[size:size + n_i * n_w * n_c]  # (bi, w, bc)
    lib.xattn_t2i_attention(s.data_ptr(), dot.data_ptr(), n_i, n_r, n_w, n_c, LEAKY_SLOPE, lambda_softmax, EPS)
    word_norms, counts = word_norms.contiguous(), counts.contiguous()  # s now holds e, the attention
    lib.xattn_t2i_cosines(dot.data_ptr(), s.data_ptr(), gram_upper.data_ptr(), word_norms.data_ptr(),
                          counts.data_ptr(), out.data_ptr(), out.stride(0), n_i, n_r, n_w, n_c, EPS)


# ----------------------------------------------------------------------------- building and loading
@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels (built on first use, then loaded from the cache), or None with ``status()`` saying why."""
    global _status
    runtime = _torch_openmp()
    found = shutil.which("cc") or shutil.which("gcc")
    compiler = shlex.split(os.environ.get("CC", "")) or ([found] if found else [])
    if runtime is None:
        _status = "off: torch does not run on a GNU OpenMP runtime here (its thread pool could not be shared)"
        return None
    if not compiler:
        _status = "off: no C compiler (set CC, or install gcc)"
        return None
    try:
        path = _build(compiler, runtime)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as err:
        _status = f"off: building {SOURCE.name} failed: {err}"
        warnings.warn(f"hat_min: the fused CPU kernels could not be built ({err}); scoring uses the plain "
                      f"torch formulas, which are slower (scan_implementation='blocked' never tries them).",
                      stacklevel=3)
        return None
    p, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.xattn_t2i_attention.argtypes = [p, p, i64, i64, i64, i64, f32, f32, f32]
    lib.xattn_t2i_cosines.argtypes = [p, p, p, p, p, p, i64, i64, i64, i64, i64, f32]
    lib.xattn_t2i_attention.restype = lib.xattn_t2i_cosines.restype = None
    _status = f"on: {path}"
    return lib


def _torch_openmp() -> str | None:
    """Path of the GNU OpenMP runtime (libgomp) that torch has loaded, or None (other runtime, not Linux)."""
    if "OpenMP" not in torch.__config__.parallel_info().split("parallel backend:")[-1]:
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    found = [line.split()[-1] for line in maps if "/libgomp" in line and line.split()[-1].startswith("/")]
    return found[0] if found else None


def _flags() -> list[str]:
    flags = ["-O3", "-fPIC", "-fno-math-errno", "-fopenmp", "-march=native"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-mprefer-vector-width=512")  # AVX-512 where there is one; ignored elsewhere
    return flags


def _cache_dir() -> Path:
    root = os.environ.get("HAT_MIN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hat_min")
    return Path(root) / "kernels"


def _build(compiler: list[str], runtime: str) -> Path:
    """Compile and link once per (source, flags, compiler, CPU, OpenMP runtime); reuse the file afterwards."""
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256("\n".join([SOURCE.read_text(), " ".join(_flags()), *compiler, version, runtime,
                                    _cpu_flags()]).encode()).hexdigest()[:16]
    folder = _cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: a private folder of this process (no cache, nothing shared)
        folder = Path(tempfile.mkdtemp(prefix="hat_min-kernels-"))
    target = folder / f"xattn_cpu-{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # then one atomic rename: safe for parallel builds
        obj, lib = Path(tmp) / "xattn_cpu.o", Path(tmp) / "xattn_cpu.so"
        for cmd in ([*compiler, *_flags(), "-c", str(SOURCE), "-o", str(obj)],
                    [*compiler, "-shared", str(obj), runtime, f"-Wl,-rpath,{Path(runtime).parent}", "-o", str(lib)]):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise subprocess.SubprocessError(f"{cmd[0]} ... exited {done.returncode}: "
                                                 f"{done.stderr.strip()[-500:]}")
        os.replace(lib, target)
    return target


def _cpu_flags() -> str:
    """The CPU's feature flags (the build uses -march=native): a shared cache never serves another CPU's build."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()
