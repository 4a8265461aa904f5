"""Two-stage retrieval: first-stage candidates against brute force, exact reranked scores, rankings, counts."""
import pytest
import torch

from data_prep.synthetic import generate
from hat_min import HATConfig, coco_1k, recall_at_k
from hat_min.evaluation.protocols import Encoded, encode, similarity
from hat_min.model import pooled_embedding
from hat_min.evaluation.retrieval import (candidate_pairs, candidates, global_embeddings, pair_scores, rerank, rerank_curve, rerank_evaluate)

CONFIG = HATConfig.preset("tiny", level_weights=(1.0, 0.5, 2.0), embed_dim=16)


def random_encoded(n_img=8, captions_per_image=3, words=6, dim=16, seed=0) -> Encoded:
    """Random per-level features shaped like ``evaluate.encode``'s (three levels, zero padding)."""
    g = torch.Generator().manual_seed(seed)
    n_cap = n_img * captions_per_image
    lengths = torch.randint(1, words + 1, (n_cap,), generator=g)
    mask = torch.arange(words)[None] < lengths[:, None]
    images = [torch.randn(n_img, r, dim, generator=g) for r in (9, 4, 1)]
    texts = [torch.randn(n_cap, words, dim, generator=g) * mask[..., None] for _ in range(3)]
    return Encoded(images, texts, mask, captions_per_image)



def brute_top_k(cosines, k):
    """Per row, the indices of the k largest values, by sorting each row."""
    return torch.stack([torch.argsort(row, descending=True)[:k] for row in cosines])


def test_global_embeddings_pool_every_level():
    encoded = random_encoded()
    images, caps = global_embeddings(encoded)
    torch.testing.assert_close(images, pooled_embedding(encoded.image_levels))
    torch.testing.assert_close(caps, pooled_embedding(encoded.text_levels, encoded.mask))


def test_candidates_are_the_top_k_by_cosine():
    g = torch.Generator().manual_seed(1)
    cosines = torch.rand(6, 18, generator=g)  # distinct values: no ties
    i2t, t2i = candidates(cosines, 4)
    assert torch.equal(i2t.sort(1).values, brute_top_k(cosines, 4).sort(1).values)
    assert torch.equal(t2i.sort(1).values, brute_top_k(cosines.T, 4).sort(1).values)
    i2t, t2i = candidates(cosines, 100)  # k beyond the gallery: everything
    assert i2t.shape == (6, 18) and t2i.shape == (18, 6)


def test_candidates_of_coco_1k_stay_in_their_fold():
    cosines = torch.rand(6, 18, generator=torch.Generator().manual_seed(2))
    i2t, t2i = candidates(cosines, 5, fold_images=3, captions_per_image=3)
    assert torch.equal(i2t // 9, torch.arange(6)[:, None].expand(6, 5) // 3)  # captions 0-8 go with images 0-2
    assert torch.equal(t2i // 3, (torch.arange(18) // 9)[:, None].expand(18, 3))


def test_candidate_pairs_are_the_union_once():
    i2t = torch.tensor([[0, 1], [2, 0]])  # image 0 -> captions 0, 1; image 1 -> captions 2, 0
    t2i = torch.tensor([[0], [0], [1]])  # caption 0 -> image 0; caption 1 -> image 0; caption 2 -> image 1
    images, caps = candidate_pairs(i2t, t2i, n_cap=3)
    assert sorted(zip(images.tolist(), caps.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 2)]


def test_pair_scores_are_the_exact_hat_scores():
    encoded = random_encoded()
    full = similarity(CONFIG, encoded, progress=False, device="cpu")
    images, caps = torch.tensor([0, 7, 3, 3]), torch.tensor([23, 0, 5, 6])
    torch.testing.assert_close(pair_scores(CONFIG, encoded, images, caps, device="cpu"), full[images, caps])
    t2i = CONFIG.replace(direction="t2i")
    torch.testing.assert_close(pair_scores(t2i, encoded, images, caps, device="cpu"),
                               similarity(t2i, encoded, progress=False, device="cpu")[images, caps])


def test_candidates_keep_their_exact_score_and_the_rest_rank_below():
    encoded = random_encoded()
    full = similarity(CONFIG, encoded, progress=False, device="cpu")
    ranked = rerank(CONFIG, encoded, k=3, device="cpu")
    img_emb, cap_emb = global_embeddings(encoded)
    i2t, t2i = candidates(img_emb @ cap_emb.T, 3)
    for i in range(8):
        chosen = torch.zeros(24, dtype=torch.bool)
        chosen[i2t[i]] = True
        torch.testing.assert_close(ranked.i2t[i, chosen], full[i, chosen])
        assert ranked.i2t[i, ~chosen].max() < ranked.i2t[i, chosen].min()
    for j in range(24):
        chosen = torch.zeros(8, dtype=torch.bool)
        chosen[t2i[j]] = True
        torch.testing.assert_close(ranked.t2i[chosen, j], full[chosen, j])
        assert ranked.t2i[~chosen, j].max() < ranked.t2i[chosen, j].min()
    assert ranked.xattn_pairs == len(set(zip(*candidate_pairs(i2t, t2i, 24)))) <= 8 * 3 + 24 * 3


def test_non_candidates_keep_the_first_stage_order():
    encoded = random_encoded(seed=3)
    ranked = rerank(CONFIG, encoded, k=2, device="cpu")
    img_emb, cap_emb = global_embeddings(encoded)
    cosines = img_emb @ cap_emb.T
    row = ranked.i2t[0]
    rest = row < row.max() - 2.5  # far below the candidates
    assert torch.equal(torch.argsort(row[rest]), torch.argsort(cosines[0][rest]))


def test_k_covering_the_gallery_gives_full_scoring():
    encoded = random_encoded(seed=4)
    full = similarity(CONFIG, encoded, progress=False, device="cpu")
    ranked = rerank(CONFIG, encoded, k=24, device="cpu")
    torch.testing.assert_close(ranked.i2t, full)
    torch.testing.assert_close(ranked.t2i, full)
    assert ranked.xattn_pairs == full.numel()


@pytest.fixture(scope="module")
def split():
    return generate(n_train=4, n_val=4, n_test=10, seed=7, progress=False)["test"]


FAST = {"workers": 0, "progress": False, "batch_size": 25}


@pytest.fixture(scope="module")
def encoded(tiny_model, split):
    return encode(tiny_model, split, **FAST)


def test_rerank_evaluate_reports_recalls_pairs_and_times(tiny_model, split):
    result = rerank_evaluate(tiny_model, split, k=4, **FAST)  # encodes the split itself
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum", "xattn_pairs"):
        assert key in result
    info = result["info"]
    assert info["full_pairs"] == 10 * 50 and 0 < result["xattn_pairs"] <= 10 * 4 + 50 * 4
    assert result["rsum"] == pytest.approx(sum(result[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1",
                                                                   "t2i_r5", "t2i_r10")))
    assert info["first_stage_s"] >= 0 and info["rerank_s"] >= 0 and info["encode_s"] > 0 and info["k"] == 4


def test_rerank_evaluate_with_every_candidate_equals_full_scoring(tiny_model, split, encoded):
    full = similarity(tiny_model, encoded, progress=False)
    reranked = rerank_evaluate(tiny_model, split, k=50, return_sims=True, encoded=encoded, **FAST)
    torch.testing.assert_close(reranked["i2t_sims"], full, atol=1e-5, rtol=0)
    expected = recall_at_k(full)
    for key in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r10", "rsum", "i2t_medr", "t2i_meanr"):
        assert reranked[key] == pytest.approx(expected[key])
    folds = rerank_evaluate(tiny_model, split, k=50, protocol="coco1k", fold_images=5, encoded=encoded, **FAST)
    expected = coco_1k(full, fold_images=5)
    assert folds["i2t_r1"] == pytest.approx(expected["i2t_r1"]) and folds["t2i_r5"] == pytest.approx(expected["t2i_r5"])
    assert folds["info"]["full_pairs"] == 2 * 5 * 25


def test_rerank_curve_has_a_full_row_and_one_per_k(tiny_model, split, encoded):
    rows = rerank_curve(tiny_model, split, ks=(1, 4), encoded=encoded, **FAST)
    assert [row["k"] for row in rows] == [None, 1, 4]
    assert rows[0]["xattn_pairs"] == 10 * 50 and rows[0]["pair_share"] == 1.0
    assert rows[1]["xattn_pairs"] <= rows[2]["xattn_pairs"] < 10 * 50
    assert all(set(row) == {"k", "i2t_r1", "t2i_r1", "rsum", "xattn_pairs", "pair_share", "seconds"} for row in rows)
    assert rows[0]["i2t_r1"] == pytest.approx(recall_at_k(similarity(tiny_model, encoded, progress=False))["i2t_r1"])


def test_clear_errors(tiny_model, split):
    with pytest.raises(ValueError, match="k must be >= 1"):
        candidates(torch.rand(2, 10), 0)
    with pytest.raises(TypeError, match="one HAT model"):
        rerank_evaluate([tiny_model, tiny_model], split, **FAST)
    with pytest.raises(ValueError, match="unknown protocol"):
        rerank_evaluate(tiny_model, split, protocol="5k", **FAST)
