"""hat_min.reference: the one-pair formula, the double loop built on it, and a case worked by hand."""
import pytest
import torch
import torch.nn.functional as F

from hat_min.reference import literal_scan, scan_pair


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_literal_scan_is_scan_pair_of_each_pair(direction):
    g = torch.Generator().manual_seed(0)
    images, captions = torch.randn(3, 6, 8, generator=g), torch.randn(4, 5, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 0, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    captions[~mask] = float("nan")  # padding never enters the formula
    sims = literal_scan(images, captions, mask, direction, 9.0)
    assert sims.shape == (3, 4) and sims.dtype == torch.float64 and torch.isfinite(sims).all()
    for i in range(3):
        for j in range(4):
            assert sims[i, j] == scan_pair(images[i], captions[j][mask[j]], direction, 9.0)


def test_one_context_token_gets_all_the_attention():
    """With a single word (i2t) or region (t2i) every query attends to it: the score is the mean cosine."""
    g = torch.Generator().manual_seed(1)
    v, w = torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randn(1, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(scan_pair(v, w, "i2t", 9.0), F.cosine_similarity(v, w, dim=1).mean())
    torch.testing.assert_close(scan_pair(w, v, "t2i", 9.0), F.cosine_similarity(v, w, dim=1).mean())
