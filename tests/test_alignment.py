"""xattn_similarity and hierarchical_similarity against the literal, one-pair-at-a-time SCAN of hat_min.reference."""
import pytest
import torch

from hat_min.alignment import _block_shape, hierarchical_similarity, xattn_pair_similarity, xattn_similarity
from hat_min.reference import literal_hierarchical, literal_scan


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


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("lam", [0.5, 4.0, 9.0, 20.0, 50.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_literal_scan(direction, lam, seed):
    images, captions, mask = random_inputs(seed)
    expected = literal_scan(images, captions, mask, direction, lam)
    got = xattn_similarity(images, captions, mask, direction, lam)
    assert got.shape == (5, 7)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 36, 10_000])
def test_chunk_size_does_not_change_result(direction, chunk_size):
    images, captions, mask = random_inputs(3, n_img=6, n_cap=11)
    reference = xattn_similarity(images, captions, mask, direction, chunk_size=10**6)
    got = xattn_similarity(images, captions, mask, direction, chunk_size=chunk_size)
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_padding_values_do_not_matter(direction):
    images, captions, mask = random_inputs(4, junk=False)
    clean = xattn_similarity(images, captions, mask, direction)
    captions[~mask] = torch.randn(int((~mask).sum()), captions.shape[-1]) * 100
    torch.testing.assert_close(xattn_similarity(images, captions, mask, direction), clean)


def test_non_prefix_mask_and_int_mask():
    images, captions, mask = random_inputs(5, junk=False)
    mask[2] = torch.tensor([True, False, True, False, True])  # holes inside the caption
    for direction in ("i2t", "t2i"):
        expected = literal_scan(images, captions, mask, direction, 9.0)
        got = xattn_similarity(images, captions, mask.long(), direction)
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)


def test_realistic_sizes_match_literal_on_a_sample():
    g = torch.Generator().manual_seed(7)
    images, captions = torch.randn(4, 49, 64, generator=g), torch.randn(6, 16, 64, generator=g)
    mask = torch.arange(16)[None] < torch.tensor([16, 3, 9, 12, 1, 7])[:, None]
    for direction in ("i2t", "t2i"):
        torch.testing.assert_close(xattn_similarity(images, captions, mask, direction).double(),
                                   literal_scan(images, captions, mask, direction, 9.0), atol=1e-5, rtol=1e-4)


def test_gradients_flow_and_match_literal():
    images, captions, mask = random_inputs(6, junk=False)
    for direction in ("i2t", "t2i"):
        a = images.double().requires_grad_()
        b = captions.double().requires_grad_()
        xattn_similarity(a, b, mask, direction).sum().backward()
        a2 = images.double().requires_grad_()
        b2 = captions.double().requires_grad_()
        literal_scan(a2, b2, mask, direction, 9.0).sum().backward()
        torch.testing.assert_close(a.grad, a2.grad, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(b.grad[mask], b2.grad[mask], atol=1e-6, rtol=1e-4)


def test_half_precision_inputs_give_float32_scores():
    images, captions, mask = random_inputs(8, junk=False)
    got = xattn_similarity(images.bfloat16(), captions.bfloat16(), mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, xattn_similarity(images, captions, mask), atol=0.05, rtol=0.05)


def test_hierarchical_similarity_is_weighted_sum_of_levels():
    levels = [random_inputs(s, junk=False) for s in (10, 11, 12)]
    mask = levels[0][2]
    imgs, caps = [lv[0] for lv in levels], [lv[1] for lv in levels]
    weights = [1.0, 0.5, 2.0]
    expected = literal_hierarchical(imgs, caps, mask, weights, "i2t", 9.0)
    got = hierarchical_similarity(imgs, caps, mask, weights)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(hierarchical_similarity(imgs[:1], caps[:1], mask), xattn_similarity(imgs[0], caps[0], mask))


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
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        xattn_similarity(**kwargs)


# ----------------------------------------------------------------------------- the pair scorer, paths, blocks
@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("lam", [9.0, 50.0])
@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_pair_similarity_equals_the_matrix_entries(direction, lam, chunk_size):
    images, captions, mask = random_inputs(3, n_img=6, n_cap=11)  # junk in the padding
    mask[4] = torch.tensor([True, False, True, False, False])  # a hole inside a caption
    full = xattn_similarity(images, captions, mask, direction, lam)
    g = torch.Generator().manual_seed(1)
    img, cap = torch.randint(0, 6, (40,), generator=g), torch.randint(0, 11, (40,), generator=g)  # repeats too
    got = xattn_pair_similarity(images, captions, mask, img, cap, direction, lam, chunk_size)
    assert got.shape == (40,) and got.dtype == torch.float32
    torch.testing.assert_close(got, full[img, cap], atol=1e-6, rtol=1e-5)


def test_pair_similarity_of_no_pairs_and_bad_pairs():
    images, captions, mask = random_inputs(4)
    empty = torch.zeros(0, dtype=torch.long)
    assert xattn_pair_similarity(images, captions, mask, empty, empty).shape == (0,)
    with pytest.raises(ValueError, match="caption_index must lie in"):
        xattn_pair_similarity(images, captions, mask, torch.tensor([0]), torch.tensor([7]))
    with pytest.raises(ValueError, match="one length"):
        xattn_pair_similarity(images, captions, mask, torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="integers"):
        xattn_pair_similarity(images, captions, mask, torch.tensor([0.0]), torch.tensor([0.0]))


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_in_place_and_autograd_paths_agree(direction):
    """Without gradients the passes run in place in reused buffers; with them, out of place."""
    images, captions, mask = random_inputs(9, n_img=7, n_cap=13, junk=False)
    with torch.no_grad():
        no_grad = xattn_similarity(images, captions, mask, direction, chunk_size=5)
    with torch.inference_mode():
        inference = xattn_similarity(images, captions, mask, direction, chunk_size=5)
    tracked = xattn_similarity(images.requires_grad_(), captions, mask, direction, chunk_size=5)
    assert tracked.requires_grad and not no_grad.requires_grad
    torch.testing.assert_close(no_grad, tracked.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(inference, no_grad)


def test_benchmark_shapes_match_literal_on_a_sample():
    """The benchmark's shapes (R=49, W=16 with 8-16 real words, D=256) within 1e-4 of the literal formula."""
    g = torch.Generator().manual_seed(11)
    images, captions = torch.randn(3, 49, 256, generator=g), torch.randn(5, 16, 256, generator=g)
    mask = torch.arange(16)[None] < torch.tensor([16, 8, 12, 9, 15])[:, None]
    for direction in ("i2t", "t2i"):
        got = xattn_similarity(images, captions, mask, direction).double()
        assert (got - literal_scan(images, captions, mask, direction, 9.0)).abs().max() < 1e-4


@pytest.mark.parametrize("n_img, n_cap, chunk", [(64, 320, 512), (64, 320, 1024), (5, 7, 1), (1, 9, 4), (300, 2, 64)])
def test_blocks_hold_at_most_chunk_size_pairs_and_are_even(n_img, n_cap, chunk):
    step_i, step_c = _block_shape(n_img, n_cap, chunk)
    assert 1 <= step_i <= n_img and 1 <= step_c <= n_cap and step_i * step_c <= chunk
    for n, step in ((n_img, step_i), (n_cap, step_c)):  # no small remainder block
        blocks = -(-n // step)
        assert step == -(-n // blocks)


def test_half_precision_features_keep_float32_results_on_padding():
    images, captions, mask = random_inputs(12, junk=False)
    for dtype in (torch.bfloat16, torch.float16):
        got = xattn_pair_similarity(images.to(dtype), captions.to(dtype), mask, torch.tensor([0, 4]),
                                    torch.tensor([6, 2]), "t2i")
        expected = xattn_similarity(images, captions, mask, "t2i")[[0, 4], [6, 2]]
        torch.testing.assert_close(got, expected, atol=0.05, rtol=0.05)
