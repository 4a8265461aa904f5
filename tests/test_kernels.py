"""The fused t2i CPU kernels ("fused") against the torch formulas ("blocked") and the equations ("eager"),
and how they build or fall back."""
import shutil
import warnings

import pytest
import torch

from hat_min.fast import kernels
from hat_min.scan import scan_score

needs_kernels = pytest.mark.skipif(kernels.library() is None, reason=f"fused kernels {kernels.status()}")


def features(seed, n_img, n_cap, regions, words, dim, shortest=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n_img, regions, dim, generator=g)
    captions = torch.randn(n_cap, words, dim, generator=g)
    lengths = torch.randint(shortest, words + 1, (n_cap,), generator=g)
    mask = torch.arange(words)[None] < lengths[:, None]
    captions[~mask] = float("nan")  # padding may hold anything
    return images, captions, mask


def torch_path(images, captions, mask, direction, lam=9.0, **kwargs):
    """The same scores without the kernels: the torch formulas of "blocked"."""
    return scan_score(images, captions, mask, direction, lam, "blocked", **kwargs)


def fused(images, captions, mask, direction, lam=9.0, **kwargs):
    return scan_score(images, captions, mask, direction, lam, "fused", **kwargs)


def eager(images, captions, mask, direction, lam=9.0):
    """The equations in float64."""
    return scan_score(images.double(), captions.double(), mask, direction, lam, "eager")


@needs_kernels
@pytest.mark.parametrize("n_img, n_cap, regions, words, dim", [
    (3, 7, 5, 4, 8),  # fewer captions than one vector
    (5, 37, 13, 6, 16),  # a caption tail (37 = 2 x 16 + 5), regions not a multiple of 8
    (2, 33, 1, 1, 16),  # one region, one word
    (4, 20, 49, 16, 32),  # the target's region count
    (2, 18, 196, 32, 24),  # Swin stage 3, long captions
])
@pytest.mark.parametrize("lam", [0.5, 9.0, 20.0])
def test_fused_matches_eager_and_blocked(n_img, n_cap, regions, words, dim, lam):
    images, captions, mask = features(n_img * 100 + regions, n_img, n_cap, regions, words, dim)
    with torch.no_grad():
        assert kernels.usable(images, captions, lambda_softmax=lam, inplace=True)
        got = fused(images, captions, mask, "t2i", lam)
        reference = torch_path(images, captions, mask, "t2i", lam)
        auto = scan_score(images, captions, mask, "t2i", lam, "auto")
    torch.testing.assert_close(got, reference, atol=2e-6, rtol=1e-5)
    assert torch.equal(auto, got)  # "auto" is "fused" where the kernels apply
    assert (got.double() - eager(images, captions, mask, "t2i", lam)).abs().max() < 1e-5


@needs_kernels
def test_fused_at_the_benchmark_size_and_small_chunks():
    """64 images x 320 captions, R=49, W=16 (8-16 real words), D=256: within 1e-6 of the torch formulas."""
    images, captions, mask = features(7, 64, 320, 49, 16, 256, shortest=8)
    with torch.no_grad():
        got = fused(images, captions, mask, "t2i")
        reference = torch_path(images, captions, mask, "t2i")
        torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-5)
        for chunk in (1, 7, 100):  # odd block shapes and caption tails
            torch.testing.assert_close(fused(images[:9], captions[:50], mask[:50], "t2i", chunk_size=chunk),
                                       reference[:9, :50], atol=1e-6, rtol=1e-5)


@needs_kernels
def test_fused_pairs_equal_matrix_entries():
    images, captions, mask = features(3, 6, 45, 13, 7, 16)
    g = torch.Generator().manual_seed(0)
    img, cap = torch.randint(0, 6, (200,), generator=g), torch.randint(0, 45, (200,), generator=g)
    with torch.no_grad():
        full = torch_path(images, captions, mask, "t2i")
        pairs = fused(images, captions, mask, "t2i", chunk_size=17, pairs=(img, cap))
    torch.testing.assert_close(pairs, full[img, cap], atol=2e-6, rtol=1e-5)


@needs_kernels
def test_empty_galleries():
    images, captions, mask = features(4, 3, 10, 5, 4, 8)
    with torch.no_grad():
        assert fused(images, captions[:0], mask[:0], "t2i").shape == (3, 0)
        assert fused(images[:0], captions, mask, "t2i").shape == (0, 10)
    assert kernels.upper_gram(torch.zeros(0, 5, 5)).shape == (0, 8, 5)


def test_where_the_kernels_do_not_apply():
    images, captions, _ = features(0, 2, 3, 5, 4, 8)
    assert not kernels.usable(images, captions, lambda_softmax=20.5, inplace=True)  # needs the max shift
    assert not kernels.usable(images, captions, lambda_softmax=9.0, inplace=False)  # autograd records
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        assert not kernels.usable(images.to(dtype), captions.to(dtype), lambda_softmax=9.0, inplace=True)
    big = torch.zeros(1, kernels.MAX_REGIONS + 1, 8)
    assert not kernels.usable(big, captions, lambda_softmax=9.0, inplace=True)
    # "auto" scores there with the torch formulas, which match the equations; "fused" says why it cannot
    images, captions, mask = features(1, 3, 5, 6, 4, 8)
    got = scan_score(images, captions, mask, "t2i", 30.0, "auto")
    assert (got.double() - eager(images, captions, mask, "t2i", 30.0)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="'fused' cannot score these features: lambda above 20"):
        fused(images, captions, mask, "t2i", 30.0)
    with pytest.raises(ValueError, match="float32 features on a CPU"):
        fused(images.double(), captions.double(), mask, "t2i")


def test_upper_gram_layout_gives_the_quadratic_form():
    """Read the kernel's layout back in Python: 2 e^T U e must equal e^T G e."""
    g = torch.Generator().manual_seed(2)
    for regions in (1, 8, 13, 49):
        v = torch.randn(3, regions, 5, generator=g, dtype=torch.float64)
        gram = v @ v.transpose(1, 2)
        layout = kernels.upper_gram(gram)  # (3, padded, R) = (3, blocks, R, ROWS) flattened
        padded = -(-regions // kernels.ROWS) * kernels.ROWS
        assert layout.shape == (3, padded, regions)
        blocks = layout.view(3, padded // kernels.ROWS, regions, kernels.ROWS)
        upper = blocks.permute(0, 1, 3, 2).reshape(3, padded, regions)[:, :regions]  # U, rows back in order
        e = torch.rand(3, regions, 4, generator=g, dtype=torch.float64)
        brute = torch.einsum("nrc,nrs,nsc->nc", e, gram, e)
        torch.testing.assert_close(2 * torch.einsum("nrc,nrs,nsc->nc", e, upper, e), brute)
        assert torch.all(upper.tril(-1) == 0)


def test_blocked_never_calls_the_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "t2i_block", lambda *a, **k: calls.append(1))
    images, captions, mask = features(0, 2, 3, 5, 4, 8)
    with torch.no_grad():
        got = torch_path(images, captions, mask, "t2i")
    assert not calls and torch.isfinite(got).all()


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """A library() that builds again into an empty cache; the real one is restored afterwards."""
    monkeypatch.setenv("HAT_MIN_CACHE", str(tmp_path))
    kernels.library.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    kernels.library.cache_clear()
    kernels.library()


@pytest.mark.parametrize("cc", ["false", "no-such-compiler-anywhere"])
def test_a_failed_build_warns_once_and_falls_back(fresh_build, monkeypatch, cc):
    if kernels._torch_openmp() is None:
        pytest.skip("torch does not run on GNU OpenMP here: no build is attempted")
    monkeypatch.setenv("CC", cc)
    with pytest.warns(UserWarning, match="could not be built"):
        assert kernels.library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: no second warning
        assert kernels.library() is None
        assert kernels.status().startswith("off: building xattn_cpu.c failed")
    images, captions, mask = features(2, 3, 5, 6, 4, 8)
    with torch.no_grad():
        got = scan_score(images, captions, mask, "t2i", implementation="auto")
        with pytest.raises(ValueError, match="'fused' cannot score these features: off: building"):
            fused(images, captions, mask, "t2i")
    assert (got.double() - eager(images, captions, mask, "t2i")).abs().max() < 1e-5
    assert not list(fresh_build.rglob("*.so"))


def test_no_compiler_is_a_status_not_a_warning(fresh_build, monkeypatch):
    if kernels._torch_openmp() is None:
        pytest.skip("torch does not run on GNU OpenMP here")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.library() is None
    assert "no C compiler" in kernels.status()


@needs_kernels
def test_the_build_is_cached_by_content(fresh_build, monkeypatch):
    lib = kernels.library()
    built = list(fresh_build.rglob("xattn_cpu-*.so"))
    assert lib is not None and len(built) == 1 and kernels.status() == f"on: {built[0]}"
    compiles = []
    real_run = kernels.subprocess.run
    monkeypatch.setattr(kernels.subprocess, "run", lambda cmd, **kw: compiles.append(cmd) or real_run(cmd, **kw))
    again = kernels._build(kernels.shlex.split(kernels.os.environ.get("CC", "")) or [shutil.which("cc") or "gcc"],
                           kernels._torch_openmp())
    assert again == built[0] and all("-c" not in cmd for cmd in compiles)  # only `cc --version`
