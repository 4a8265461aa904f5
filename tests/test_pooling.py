"""Global embeddings against a literal per-item loop."""
import math

import torch

from hat_min.pooling import pooled_embedding


def _literal(levels, mask):
    out = []
    for n in range(levels[0].shape[0]):
        total = torch.zeros(levels[0].shape[-1], dtype=torch.float64)
        for feats in levels:
            tokens = [feats[n, t].double() for t in range(feats.shape[1]) if mask is None or mask[n, t]]
            mean = sum(tokens) / len(tokens)
            total += mean / math.sqrt(float(mean @ mean))
        out.append(total / math.sqrt(float(total @ total)))
    return torch.stack(out).float()


def test_matches_a_literal_loop_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    levels = [torch.randn(5, 7, 8, generator=g), torch.randn(5, 7, 8, generator=g)]
    mask = torch.arange(7)[None] < torch.tensor([1, 3, 7, 2, 5])[:, None]
    for feats in levels:
        feats[~mask] = float("nan")  # padding may hold anything
    torch.testing.assert_close(pooled_embedding(levels, mask), _literal(levels, mask))


def test_without_a_mask_every_token_counts():
    g = torch.Generator().manual_seed(1)
    levels = [torch.randn(3, 4, 6, generator=g), torch.randn(3, 1, 6, generator=g)]
    out = pooled_embedding(levels)
    torch.testing.assert_close(out, _literal(levels, None))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_bad_input_is_named():
    import pytest

    with pytest.raises(ValueError, match="at least one level"):
        pooled_embedding([])
    with pytest.raises(ValueError, match="mask must be"):
        pooled_embedding([torch.zeros(2, 3, 4)], torch.ones(3, 3))
