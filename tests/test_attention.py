"""hat_min.tutorial.attention: one pair's attention weights, checked against a per-token loop and against the
model's score (``hat_min.scan.scan_score``)."""
import math

import pytest
import torch
import torch.nn.functional as F

from hat_min import scan_score
from hat_min.tutorial.attention import attention, attention_maps, level_scores, token_grid


def _literal_attention(query, context, lam):
    """alpha (Q, K) one entry at a time, straight from the formulas of hat_min/scan.py's docstring."""
    Q, K = query.shape[0], context.shape[0]
    leaky = [[F.leaky_relu(query[q] @ context[k], 0.1).item() for k in range(K)] for q in range(Q)]
    norm = [math.sqrt(sum(leaky[q][k] ** 2 for q in range(Q))) + 1e-8 for k in range(K)]  # over the queries
    alpha = torch.zeros(Q, K, dtype=torch.float64)
    for q in range(Q):
        e = [math.exp(lam * leaky[q][k] / norm[k]) for k in range(K)]
        for k in range(K):
            alpha[q, k] = e[k] / sum(e)
    return alpha


def _literal_score(query, context, lam):
    alpha = _literal_attention(query, context, lam)
    cos = [F.cosine_similarity(query[q].double(), alpha[q] @ context.double(), dim=0) for q in range(query.shape[0])]
    return sum(cos) / len(cos)


def _pair(seed=0, regions=(16, 4), width=12, dim=8, real=7):
    """One image's levels L x (R_l, D), one caption's L x (W, D) with garbage past ``real`` tokens, mask (W,)."""
    g = torch.Generator().manual_seed(seed)
    image = [torch.randn(r, dim, generator=g) for r in regions]
    text = [torch.randn(width, dim, generator=g) for _ in regions]
    for t in text:
        t[real:] = 1e3  # padding must not matter
    mask = torch.zeros(width, dtype=torch.long)
    mask[:real] = 1
    return image, text, mask


@pytest.mark.parametrize("lam", [0.5, 9.0, 50.0])
def test_attention_matches_a_literal_loop(lam):
    g = torch.Generator().manual_seed(1)
    query, context = torch.randn(5, 6, generator=g), torch.randn(4, 6, generator=g)
    alpha = attention(query, context, lam)
    assert alpha.shape == (5, 4)
    torch.testing.assert_close(alpha.double(), _literal_attention(query, context, lam), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alpha.sum(1), torch.ones(5))


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_level_scores_match_a_literal_loop(direction):
    image, text, mask = _pair(2, regions=(5,), dim=6, real=4)
    regions, words = image[0], text[0][:4]
    query, context = (regions, words) if direction == "i2t" else (words, regions)
    score = level_scores(image, text, mask, direction, 9.0)[0]
    assert abs(score.item() - _literal_score(query, context, 9.0).item()) < 1e-5


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_level_scores_are_the_models_scores(direction):
    """The weights drawn are the ones the model scores with: per level, every pair of a small batch."""
    g = torch.Generator().manual_seed(3)
    images = [torch.randn(3, r, 8, generator=g) for r in (16, 4)]  # L x (N_img, R, D)
    captions = [torch.randn(4, 9, 8, generator=g) for _ in range(2)]  # L x (N_cap, W, D)
    mask = torch.tensor([[1] * n + [0] * (9 - n) for n in (9, 5, 2, 7)])  # (N_cap, W), real lengths differ
    for level, (img, cap) in enumerate(zip(images, captions)):
        expected = scan_score(img, cap, mask, direction, 9.0)  # (N_img, N_cap)
        for i in range(3):
            for j in range(4):
                got = level_scores([f[i] for f in images], [f[j] for f in captions], mask[j], direction, 9.0)
                assert abs(got[level].item() - expected[i, j].item()) < 1e-5


def test_maps_are_word_by_region_and_normalised_along_the_direction():
    image, text, mask = _pair()
    i2t = attention_maps(image, text, mask, "i2t")
    t2i = attention_maps(image, text, mask, "t2i")
    assert [tuple(m.shape) for m in i2t] == [(7, 16), (7, 4)] == [tuple(m.shape) for m in t2i]
    for m in i2t:  # each region's weights over the words sum to 1
        torch.testing.assert_close(m.sum(0), torch.ones(m.shape[1]))
    for m in t2i:  # each word's weights over the regions sum to 1
        torch.testing.assert_close(m.sum(1), torch.ones(m.shape[0]))
    regions, words = image[0], text[0][:7]
    torch.testing.assert_close(i2t[0], attention(regions, words).T)
    torch.testing.assert_close(t2i[0], attention(words, regions))


def test_padding_is_ignored():
    image, text, mask = _pair()
    clean = [t[:7] for t in text]
    for a, b in zip(attention_maps(image, text, mask), attention_maps(image, clean, torch.ones(7))):
        torch.testing.assert_close(a, b)


def test_token_grid_is_row_by_row():
    values = torch.arange(2 * 16.0).reshape(2, 16)
    grid = token_grid(values)
    assert grid.shape == (2, 4, 4)
    assert grid[1, 2, 3] == values[1, 2 * 4 + 3]
    with pytest.raises(ValueError, match="square"):
        token_grid(torch.zeros(3, 12))


def test_bad_input_is_refused_clearly():
    image, text, mask = _pair()
    with pytest.raises(ValueError, match="direction"):
        attention_maps(image, text, mask, "both")
    with pytest.raises(ValueError, match="levels"):
        attention_maps(image, text[:1], mask)
    with pytest.raises(ValueError, match="real token"):
        attention_maps(image, text, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="one pair"):
        attention_maps([f[None] for f in image], text, mask)
    with pytest.raises(ValueError, match="one width"):
        attention(torch.zeros(3, 4), torch.zeros(2, 5))
