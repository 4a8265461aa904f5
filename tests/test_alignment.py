"""xattn_similarity and hierarchical_similarity against a literal, one-pair-at-a-time SCAN."""
import pytest
import torch
import torch.nn.functional as F

from hat_min.alignment import hierarchical_similarity, xattn_similarity


def literal_scan(images, captions, mask, direction, lam):
    """The formula of HAT_METHOD.md, one (image, caption) pair at a time, padding sliced away."""
    out = torch.zeros(images.shape[0], captions.shape[0], dtype=torch.float64)
    for i in range(images.shape[0]):
        for j in range(captions.shape[0]):
            v = images[i].double()  # (R, D)
            w = captions[j][mask[j]].double()  # (W_j, D) real words only
            query, context = (v, w) if direction == "i2t" else (w, v)
            a = F.leaky_relu(query @ context.T, 0.1)  # (Q, K)
            a = a / (a.norm(dim=0, keepdim=True) + 1e-8)  # for each context token: L2 over queries
            alpha = torch.softmax(lam * a, dim=1)  # over the context tokens
            attended = alpha @ context  # (Q, D)
            out[i, j] = F.cosine_similarity(query, attended, dim=1, eps=1e-8).mean()
    return out


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
    expected = sum(w * literal_scan(i, c, mask, "i2t", 9.0) for w, i, c in zip(weights, imgs, caps))
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
