"""recall_at_k, ranks and the COCO 1K folds against literal argsort-based versions."""
import pytest
import torch

from hat_min.metrics import coco_1k, recall_at_k, retrieval_ranks


def literal_recall(sims, cpi, ks=(1, 5, 10)):
    """SCAN's evaluation loops, with ties counted against the model."""
    n_img, n_cap = sims.shape
    i2t, t2i = [], []
    for i in range(n_img):
        truth = range(i * cpi, (i + 1) * cpi)
        best = max(sims[i, j].item() for j in truth)
        i2t.append(sum(1 for j in range(n_cap) if j not in truth and sims[i, j].item() >= best))
    for j in range(n_cap):
        g = j // cpi
        t2i.append(sum(1 for i in range(n_img) if i != g and sims[i, j].item() >= sims[g, j].item()))
    out = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * sum(r < k for r in ranks) / len(ranks)
    out["rsum"] = sum(out.values())
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        ordered = sorted(ranks)
        out[f"{name}_medr"] = ordered[(len(ordered) - 1) // 2] + 1.0  # torch's median: the lower middle
        out[f"{name}_meanr"] = sum(ranks) / len(ranks) + 1.0
    return out


@pytest.mark.parametrize("cpi", [1, 3, 5])
@pytest.mark.parametrize("n_img, seed", [(1, 0), (4, 1), (23, 2), (300, 3)])
def test_matches_literal(cpi, n_img, seed):
    g = torch.Generator().manual_seed(seed)
    sims = torch.randn(n_img, n_img * cpi, generator=g)
    sims += 2.0 * torch.eye(n_img).repeat_interleave(cpi, dim=1) * torch.rand(1, generator=g)  # some signal
    got, expected = recall_at_k(sims, cpi), literal_recall(sims, cpi)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-4), key


def test_ties_count_against_the_model():
    sims = torch.zeros(10, 50)
    r = recall_at_k(sims, 5)
    assert r["i2t_r1"] == 0.0 and r["t2i_r1"] == 0.0 and r["t2i_r10"] == 100.0
    rounded = (torch.randn(20, 60, generator=torch.Generator().manual_seed(5)) * 2).round()  # many ties
    assert recall_at_k(rounded, 3) == pytest.approx(literal_recall(rounded, 3))


def test_perfect_retrieval():
    sims = torch.eye(8).repeat_interleave(5, dim=1)
    r = recall_at_k(sims, 5)
    assert r["rsum"] == 600.0 and r["i2t_medr"] == 1.0 and r["t2i_meanr"] == 1.0
    i2t, t2i = retrieval_ranks(sims, 5)
    assert i2t.tolist() == [0] * 8 and t2i.tolist() == [0] * 40


def test_other_ks():
    sims = torch.randn(12, 24, generator=torch.Generator().manual_seed(6))
    r = recall_at_k(sims, 2, ks=(1, 3))
    assert set(r) == {"i2t_r1", "i2t_r3", "t2i_r1", "t2i_r3", "rsum", "i2t_medr", "i2t_meanr", "t2i_medr", "t2i_meanr"}
    assert r == pytest.approx(literal_recall(sims, 2, ks=(1, 3)))


def test_coco_1k_is_the_mean_of_folds():
    g = torch.Generator().manual_seed(7)
    sims = torch.randn(30, 150, generator=g) + 3 * torch.eye(30).repeat_interleave(5, dim=1) * torch.rand(30, 1, generator=g)
    folds = [literal_recall(sims[f * 10:(f + 1) * 10, f * 50:(f + 1) * 50], 5) for f in range(3)]
    got = coco_1k(sims, 5, fold_images=10)
    for key in folds[0]:
        assert got[key] == pytest.approx(sum(f[key] for f in folds) / 3, abs=1e-4)
    with pytest.raises(ValueError, match="folds"):
        coco_1k(sims, 5, fold_images=7)


@pytest.mark.parametrize("sims, cpi, message", [
    (torch.randn(4, 19), 5, "captions"),
    (torch.randn(20), 5, "N_img"),
    (torch.tensor([[float("nan"), 0.0]]), 2, "NaN"),
])
def test_bad_input(sims, cpi, message):
    with pytest.raises(ValueError, match=message):
        recall_at_k(sims, cpi)


@pytest.mark.parametrize("n_img, cpi", [(1, 5), (7, 1), (40, 5), (1000, 5)])
def test_chance_recall_is_the_mean_over_random_rankings(n_img, cpi):
    from hat_min.evaluation import chance_recall

    expected = chance_recall(n_img, cpi)
    if n_img <= 40:  # the exact mean over many random score matrices
        g = torch.Generator().manual_seed(n_img)
        runs = [recall_at_k(torch.rand(n_img, n_img * cpi, generator=g), cpi) for _ in range(400)]
        for key in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r10"):
            assert sum(r[key] for r in runs) / len(runs) == pytest.approx(expected[key], abs=2.5), key
    assert expected["t2i_r1"] == pytest.approx(100 / n_img)
    assert expected["i2t_r1"] == pytest.approx(100 * cpi / (n_img * cpi))
    assert expected["rsum"] == pytest.approx(sum(v for k, v in expected.items() if k != "rsum"))
