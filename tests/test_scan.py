"""hat_min.scan: the eager SCAN against a literal one-pair loop, every implementation against eager, the level sum."""
import pytest
import torch
import torch.nn.functional as F

from hat_min.fast.blocked import _block_shape
from hat_min.scan import IMPLEMENTATIONS, attention, hierarchical_score, scan_eager, scan_score

FAST = ["blocked", "auto"]  # "fused" is t2i-only and has its own tests in test_kernels.py


def literal_pair(v, w, direction, lam):
    """One pair, the real words only, float64, written as plainly as possible (no masks, no batch)."""
    v, w = v.double(), w.double()
    q, k = (v, w) if direction == "i2t" else (w, v)
    a = F.leaky_relu(q @ k.T, 0.1)  # (Q, K)
    a = a / (a.norm(dim=0, keepdim=True) + 1e-8)  # each context column over the queries
    alpha = torch.softmax(lam * a, dim=1)
    c = alpha @ k
    return F.cosine_similarity(q, c, dim=1, eps=1e-8).mean()


def literal_scan(images, captions, mask, direction, lam):
    mask = mask.bool()
    return torch.stack([torch.stack([literal_pair(v, cap[m], direction, lam) for cap, m in zip(captions, mask)])
                        for v in images])


def random_inputs(seed, n_img=5, n_cap=7, regions=6, words=5, dim=8, junk=True):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n_img, regions, dim, generator=g)
    captions = torch.randn(n_cap, words, dim, generator=g)
    lengths = torch.randint(1, words + 1, (n_cap,), generator=g)
    lengths[0] = words  # one full-length caption
    mask = torch.arange(words)[None] < lengths[:, None]
    if junk:  # padding holds anything: huge values, NaN, inf
        junk_values = torch.tensor([1e6, float("nan"), float("inf"), -3.0])
        captions[~mask] = junk_values[torch.randint(0, 4, (int((~mask).sum()),), generator=g)][:, None]
    return images, captions, mask


# ----------------------------------------------------------------------------- eager: the equations
@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("lam", [0.5, 9.0, 50.0])
def test_eager_is_the_literal_formula_of_each_pair(direction, lam):
    images, captions, mask = random_inputs(0)
    mask[3] = torch.tensor([True, False, True, False, True])  # holes inside a caption
    got = scan_eager(images.double(), captions.double(), mask, direction, lam)
    assert got.shape == (5, 7) and got.dtype == torch.float64 and torch.isfinite(got).all()
    torch.testing.assert_close(got, literal_scan(images, captions, mask, direction, lam), atol=1e-12, rtol=1e-10)


def test_one_context_token_gets_all_the_attention():
    """With a single word (i2t) or region (t2i) every query attends to it: the score is the mean cosine."""
    g = torch.Generator().manual_seed(1)
    v, w = torch.randn(1, 5, 8, generator=g, dtype=torch.float64), torch.randn(1, 1, 8, generator=g, dtype=torch.float64)
    cos = F.cosine_similarity(v[0], w[0], dim=1).mean()
    torch.testing.assert_close(scan_eager(v, w, torch.ones(1, 1, dtype=torch.bool), "i2t")[0, 0], cos)
    torch.testing.assert_close(scan_eager(w, v, torch.ones(1, 5, dtype=torch.bool), "t2i")[0, 0], cos)


def test_attention_rows_sum_to_one_and_padding_gets_none():
    g = torch.Generator().manual_seed(2)
    queries, context = torch.randn(3, 4, 8, generator=g), torch.randn(3, 6, 8, generator=g)
    context_mask = torch.arange(6)[None] < torch.tensor([6, 2, 4])[:, None]
    alpha = attention(queries, context, torch.ones(3, 4, dtype=torch.bool), context_mask, 9.0)  # (P, Q, K)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 4))
    assert (alpha[~context_mask[:, None, :].expand_as(alpha)] == 0).all()


# ----------------------------------------------------------------------------- every implementation against eager
@pytest.mark.parametrize("implementation", FAST)
@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("lam", [0.5, 4.0, 9.0, 20.0, 50.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_implementations_equal_eager(implementation, direction, lam, seed):
    images, captions, mask = random_inputs(seed)  # junk in the padding
    expected = scan_score(images.double(), captions.double(), mask, direction, lam, "eager")
    with torch.no_grad():
        got = scan_score(images, captions, mask, direction, lam, implementation)
    assert got.shape == (5, 7) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("implementation", ["eager", *FAST])
@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_padding_values_and_a_longer_padding_do_not_matter(implementation, direction):
    images, captions, mask = random_inputs(4, junk=False)
    clean = scan_score(images, captions, mask, direction, implementation=implementation)
    captions[~mask] = torch.randn(int((~mask).sum()), captions.shape[-1]) * 100
    torch.testing.assert_close(scan_score(images, captions, mask, direction, implementation=implementation), clean)
    longer = torch.cat([captions, torch.full((7, 3, 8), float("nan"))], 1)
    wider = torch.cat([mask, torch.zeros(7, 3, dtype=torch.bool)], 1)
    torch.testing.assert_close(scan_score(images, longer, wider.long(), direction, implementation=implementation), clean)


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_gradients_of_fast_and_eager_agree(direction):
    images, captions, mask = random_inputs(6, junk=False)
    grads = []
    for implementation in ("eager", "blocked"):
        a, b = images.double().requires_grad_(), captions.double().requires_grad_()
        scan_score(a, b, mask, direction, 9.0, implementation).sum().backward()
        grads.append((a.grad, b.grad[mask]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)


def test_realistic_sizes_agree_on_a_sample():
    """The benchmark's shapes (R=49, W=16 with 1-16 real words, D=64): every implementation within 1e-5 of eager."""
    g = torch.Generator().manual_seed(7)
    images, captions = torch.randn(4, 49, 64, generator=g), torch.randn(6, 16, 64, generator=g)
    mask = torch.arange(16)[None] < torch.tensor([16, 3, 9, 12, 1, 7])[:, None]
    for direction in ("i2t", "t2i"):
        expected = scan_score(images.double(), captions.double(), mask, direction, implementation="eager")
        for implementation in FAST:
            with torch.no_grad():
                got = scan_score(images, captions, mask, direction, implementation=implementation)
            torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("implementation", ["eager", *FAST])
@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("lam", [9.0, 50.0])
def test_pairs_equal_the_matrix_entries(implementation, direction, lam):
    images, captions, mask = random_inputs(3, n_img=6, n_cap=11)  # junk in the padding
    mask[4] = torch.tensor([True, False, True, False, False])  # a hole inside a caption
    full = scan_score(images, captions, mask, direction, lam, implementation)
    g = torch.Generator().manual_seed(1)
    img, cap = torch.randint(0, 6, (40,), generator=g), torch.randint(0, 11, (40,), generator=g)  # repeats too
    for chunk_size in (1, 3, 1024):
        got = scan_score(images, captions, mask, direction, lam, implementation, chunk_size, pairs=(img, cap))
        assert got.shape == (40,) and got.dtype == torch.float32
        torch.testing.assert_close(got, full[img, cap], atol=1e-6, rtol=1e-5)


def test_no_pairs_and_bad_pairs():
    images, captions, mask = random_inputs(4)
    empty = torch.zeros(0, dtype=torch.long)
    assert scan_score(images, captions, mask, pairs=(empty, empty)).shape == (0,)
    with pytest.raises(ValueError, match="caption_index must lie in"):
        scan_score(images, captions, mask, pairs=(torch.tensor([0]), torch.tensor([7])))
    with pytest.raises(ValueError, match="one length"):
        scan_score(images, captions, mask, pairs=(torch.tensor([0, 1]), torch.tensor([0])))
    with pytest.raises(ValueError, match="integers"):
        scan_score(images, captions, mask, pairs=(torch.tensor([0.0]), torch.tensor([0.0])))


# ----------------------------------------------------------------------------- the blocked implementation
@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 36, 10_000])
def test_chunk_size_does_not_change_result(direction, chunk_size):
    images, captions, mask = random_inputs(3, n_img=6, n_cap=11)
    reference = scan_score(images, captions, mask, direction, implementation="blocked", chunk_size=10**6)
    got = scan_score(images, captions, mask, direction, implementation="blocked", chunk_size=chunk_size)
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_in_place_and_autograd_paths_agree(direction):
    """Without gradients the passes run in place in reused buffers; with them, out of place."""
    images, captions, mask = random_inputs(9, n_img=7, n_cap=13, junk=False)
    score = lambda a: scan_score(a, captions, mask, direction, implementation="blocked", chunk_size=5)  # noqa: E731
    with torch.no_grad():
        no_grad = score(images)
    with torch.inference_mode():
        inference = score(images)
    tracked = score(images.requires_grad_())
    assert tracked.requires_grad and not no_grad.requires_grad
    torch.testing.assert_close(no_grad, tracked.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(inference, no_grad)


@pytest.mark.parametrize("n_img, n_cap, chunk", [(64, 320, 512), (64, 320, 1024), (5, 7, 1), (1, 9, 4), (300, 2, 64)])
def test_blocks_hold_at_most_chunk_size_pairs_and_are_even(n_img, n_cap, chunk):
    step_i, step_c = _block_shape(n_img, n_cap, chunk)
    assert 1 <= step_i <= n_img and 1 <= step_c <= n_cap and step_i * step_c <= chunk
    for n, step in ((n_img, step_i), (n_cap, step_c)):  # no small remainder block
        blocks = -(-n // step)
        assert step == -(-n // blocks)


def test_half_precision_inputs_give_float32_scores():
    images, captions, mask = random_inputs(8, junk=False)
    exact = scan_score(images, captions, mask)
    for dtype in (torch.bfloat16, torch.float16):
        got = scan_score(images.to(dtype), captions.to(dtype), mask)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, exact, atol=0.05, rtol=0.05)
        pairs = (torch.tensor([0, 4]), torch.tensor([6, 2]))
        torch.testing.assert_close(scan_score(images.to(dtype), captions.to(dtype), mask, "t2i", pairs=pairs),
                                   scan_score(images, captions, mask, "t2i")[pairs], atol=0.05, rtol=0.05)


# ----------------------------------------------------------------------------- the switch and the level sum
def test_the_switch_knows_every_implementation_and_refuses_others():
    assert set(IMPLEMENTATIONS) == {"eager", "blocked", "fused", "auto"}
    images, captions, mask = random_inputs(0)
    with pytest.raises(ValueError, match="unknown scan implementation 'flash'.*eager"):
        scan_score(images, captions, mask, implementation="flash")
    with pytest.raises(ValueError, match="'fused'.*t2i only"):
        scan_score(images, captions, mask, "i2t", implementation="fused")
    with pytest.raises(ValueError, match="'fused'.*autograd"):
        scan_score(images.requires_grad_(), captions, mask, "t2i", implementation="fused")


@pytest.mark.parametrize("implementation", ["eager", *FAST])
def test_hierarchical_score_is_the_weighted_sum_of_levels(implementation):
    levels = [random_inputs(s, junk=False) for s in (10, 11, 12)]
    mask = levels[0][2]
    imgs, caps = [lv[0] for lv in levels], [lv[1] for lv in levels]
    weights = [1.0, 0.5, 2.0]
    expected = sum(w * literal_scan(i, c, mask, "i2t", 9.0) for w, i, c in zip(weights, imgs, caps))
    got = hierarchical_score(imgs, caps, mask, weights, implementation=implementation)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)
    one = hierarchical_score(imgs[:1], caps[:1], mask, implementation=implementation)
    torch.testing.assert_close(one, scan_score(imgs[0], caps[0], mask, implementation=implementation))
    with pytest.raises(ValueError, match="one of each per level"):
        hierarchical_score(imgs, caps[:2], mask)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=torch.randn(2, 3, 4), captions=torch.randn(2, 5, 6), caption_mask=torch.ones(2, 5)), "widths"),
        (dict(images=torch.randn(2, 3, 4), captions=torch.randn(2, 5, 4), caption_mask=torch.ones(2, 4)), "caption_mask"),
        (dict(images=torch.randn(3, 4), captions=torch.randn(2, 5, 4), caption_mask=torch.ones(2, 5)), "3-D"),
        (dict(images=torch.randn(2, 3, 4), captions=torch.randn(2, 5, 4), caption_mask=torch.zeros(2, 5)), "real token"),
        (dict(images=torch.randn(2, 3, 4), captions=torch.randn(2, 5, 4), caption_mask=torch.ones(2, 5),
              direction="both"), "direction"),
        (dict(images=torch.randn(2, 3, 4), captions=torch.randn(2, 5, 4), caption_mask=torch.ones(2, 5),
              chunk_size=0), "chunk_size"),
    ],
)
@pytest.mark.parametrize("implementation", ["eager", "auto"])
def test_bad_input_is_a_clear_error(kwargs, message, implementation):
    with pytest.raises(ValueError, match=message):
        scan_score(**kwargs, implementation=implementation)
