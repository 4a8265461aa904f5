"""Two-stage retrieval (beyond the paper): global embeddings find candidates, HAT reranks them.

HAT scores a pair with token-level cross-attention at every level: a gallery of N_img images
and N_cap captions costs N_img * N_cap such scores. A first stage that is a single matrix
product cuts that down:

1. First stage: one unit vector per image and per caption (``hat_min.model.pooled_embedding`` of the
   per-level token features that ``evaluate.encode`` keeps), and for every query its top-K
   items by cosine: K captions per image, K images per caption.
2. Second stage: the exact HAT score (``hat_min.scan.hierarchical_score`` with ``pairs``) of the
   union of those pairs, each pair scored once.
3. Ranking: a query's K candidates by their HAT score, then every other item below all of them,
   in the order of the first stage. A candidate gets exactly the score that full scoring gives.

``xattn_pairs`` counts the pairs scored with cross-attention (full scoring: N_img * N_cap).
The first stage is only as good as the pooled embeddings: ``TrainConfig.global_loss_weight``
trains them with an auxiliary contrastive loss.

    result = rerank_evaluate(model, splits["test"], k=32)   # Recall@K, rsum, xattn_pairs, timings
    rows = rerank_curve(model, splits["test"], ks=(4, 16, 32, 64))   # R@1 and time against K
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import HATConfig
from ..fast.device import pick_device
from ..metrics import coco_1k, recall_at_k
from ..scan import hierarchical_score
from .compositional import family_accuracy, family_labels
from .protocols import Encoded, _check_protocol, default_chunk_size, encode, global_embeddings, similarity

_RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


@dataclass
class Reranked:
    """The two rankings of a reranked gallery and what they cost."""

    i2t: Tensor  # (N_img, N_cap): each image's K candidates hold their HAT score, the rest rank below
    t2i: Tensor  # (N_img, N_cap): each caption's K candidates hold their HAT score, the rest rank below
    xattn_pairs: int  # pairs scored with cross-attention (the union of both directions' candidates)
    first_stage_s: float
    rerank_s: float


def candidates(cosines: Tensor, k: int, fold_images: int | None = None,
               captions_per_image: int = 5) -> tuple[Tensor, Tensor]:
    """Top-k of the first stage: caption indices per image (N_img, k) and image indices per caption (N_cap, k).

    With ``fold_images`` (the COCO 1K protocol), candidates come from the query's own fold only.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if fold_images is not None:
        cosines = _within_folds(cosines, fold_images, captions_per_image)
        n_img, n_cap = fold_images, fold_images * captions_per_image
    else:
        n_img, n_cap = cosines.shape
    i2t = cosines.topk(min(k, n_cap), dim=1).indices  # (N_img, k)
    t2i = cosines.topk(min(k, n_img), dim=0).indices.T  # (N_cap, k)
    return i2t, t2i


def candidate_pairs(i2t: Tensor, t2i: Tensor, n_cap: int) -> tuple[Tensor, Tensor]:
    """The union of both directions' candidate pairs, each once: (P,) image and (P,) caption indices."""
    images = torch.cat([torch.arange(len(i2t), device=i2t.device).repeat_interleave(i2t.shape[1]), t2i.reshape(-1)])
    caps = torch.cat([i2t.reshape(-1), torch.arange(len(t2i), device=t2i.device).repeat_interleave(t2i.shape[1])])
    unique = torch.unique(images * n_cap + caps)  # sorted by image, then caption
    return unique // n_cap, unique % n_cap


def rerank(config: HATConfig | nn.Module, encoded: Encoded, k: int, chunk_size: int | None = None,
           fold_images: int | None = None, device: str | torch.device | None = None) -> Reranked:
    """Both rankings of a gallery by the two stages: first-stage top-k, then HAT's exact scores of those pairs."""
    cfg = config if isinstance(config, HATConfig) else config.config
    device = _device(encoded, device)
    start = time.perf_counter()
    img_emb, cap_emb = global_embeddings(encoded)
    cosines = (img_emb @ cap_emb.T).to(device)  # (N_img, N_cap) in [-1, 1]
    i2t, t2i = candidates(cosines, k, fold_images, encoded.captions_per_image)
    images, caps = candidate_pairs(i2t, t2i, cosines.shape[1])
    _sync(device)
    middle = time.perf_counter()
    scores = pair_scores(cfg, encoded, images, caps, chunk_size, device)  # (P,)
    _sync(device)
    rerank_s = time.perf_counter() - middle
    floor = float(scores.min()) - 3.0 if len(scores) else -3.0  # below every candidate, cosines keep their order
    exact = torch.full_like(cosines, float("nan"))
    exact[images, caps] = scores
    rankings = []
    for chosen in (_rows_mask(i2t, cosines.shape), _rows_mask(t2i, cosines.shape[::-1]).T):
        rankings.append(torch.where(chosen, exact, floor + cosines).cpu())
    return Reranked(rankings[0], rankings[1], len(scores), middle - start, rerank_s)


def pair_scores(config: HATConfig, encoded: Encoded, images: Tensor, captions: Tensor,
                chunk_size: int | None = None, device: str | torch.device | None = None) -> Tensor:
    """HAT's exact score of the given pairs (``hat_min.scan.hierarchical_score`` with ``pairs``) -> (P,)."""
    device = _device(encoded, device)
    chunk_size = chunk_size or default_chunk_size(device)
    with torch.no_grad():
        return hierarchical_score(encoded.image_levels, encoded.text_levels, encoded.mask.to(device), config.weights,
                                  config.direction, config.lambda_softmax, config.scan_implementation, chunk_size,
                                  pairs=(images, captions), device=device)


def rerank_evaluate(model: nn.Module, split, k: int = 32, protocol: str = "1k", *, batch_size: int = 128,
                    device: str | torch.device | None = None, captions_per_image: int = 5, fold_images: int = 1000,
                    chunk_size: int | None = None, progress: bool = True, return_sims: bool = False, tokenizer=None,
                    workers: int | None = None, encoded: Encoded | None = None) -> dict[str, Any]:
    """Recall@K of the two-stage search under ``protocol``, ``xattn_pairs``, and timings under "info".

    ``encoded`` (from ``evaluate.encode``) skips encoding. With ``return_sims`` the two rankings
    come back as "i2t_sims" and "t2i_sims".
    """
    if not isinstance(getattr(model, "config", None), HATConfig):
        raise TypeError(f"rerank_evaluate takes one HAT model, got {type(model).__name__} "
                        "(ensembles are scored in full by hat_min.evaluation.evaluate)")
    _check_protocol(protocol, len(split), fold_images)
    start = time.perf_counter()
    if encoded is None:
        encoded = encode(model, split, batch_size, device, captions_per_image, progress, tokenizer, workers=workers)
    encode_s = time.perf_counter() - start
    folds = fold_images if protocol == "coco1k" else None
    ranked = rerank(model.config, encoded, k, chunk_size, folds, device)
    result = _metrics(ranked, protocol, encoded.captions_per_image, fold_images)
    labels = family_labels(split)
    if labels is not None:  # each direction's family metrics from its own ranking
        for direction, sims in (("i2t", ranked.i2t), ("t2i", ranked.t2i)):
            family = family_accuracy(sims, labels, encoded.captions_per_image)
            result.update({key: v for key, v in family.items() if f"_{direction}" in key})
    n_img, n_cap = encoded.image_levels[0].shape[0], encoded.mask.shape[0]
    result["xattn_pairs"] = ranked.xattn_pairs
    result["info"] = {"protocol": protocol, "k": k, "n_images": n_img, "n_captions": n_cap,
                      "xattn_pairs": ranked.xattn_pairs, "full_pairs": _full_pairs(n_img, n_cap, folds, encoded),
                      "encode_s": encode_s, "first_stage_s": ranked.first_stage_s, "rerank_s": ranked.rerank_s,
                      "feature_bytes": encoded.nbytes}
    if return_sims:
        result["i2t_sims"], result["t2i_sims"] = ranked.i2t, ranked.t2i
    return result


def rerank_curve(model: nn.Module, split, ks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64), *,
                 batch_size: int = 128, device: str | torch.device | None = None, chunk_size: int | None = None,
                 progress: bool = True, workers: int | None = None, encoded: Encoded | None = None) -> list[dict]:
    """Recall@1, rSum, cross-attention pairs and seconds against K, and of full scoring (k = None), as rows.

    The split is encoded once; every row's "seconds" is its own scoring time (first stage +
    reranking, or full scoring), encoding excluded. ``pandas.DataFrame(rows)`` makes a table.
    """
    if encoded is None:
        encoded = encode(model, split, batch_size, device, progress=progress, workers=workers)
    n_img, n_cap = encoded.image_levels[0].shape[0], encoded.mask.shape[0]
    start = time.perf_counter()
    full = similarity(model, encoded, chunk_size, progress=progress, device=device)
    rows = [_row(None, recall_at_k(full, encoded.captions_per_image), n_img * n_cap, time.perf_counter() - start,
                 n_img * n_cap)]
    for k in ks:
        ranked = rerank(model.config, encoded, k, chunk_size, device=device)
        rows.append(_row(k, _metrics(ranked, "1k", encoded.captions_per_image, 1000), ranked.xattn_pairs,
                         ranked.first_stage_s + ranked.rerank_s, n_img * n_cap))
    return rows


# ----------------------------------------------------------------------------- helpers
def _metrics(ranked: Reranked, protocol: str, captions_per_image: int, fold_images: int) -> dict[str, float]:
    """i2t metrics from the i2t ranking, t2i metrics from the t2i ranking, and their rSum."""
    def score(sims: Tensor) -> dict[str, float]:
        if protocol == "coco1k":
            return coco_1k(sims, captions_per_image, fold_images)
        return recall_at_k(sims, captions_per_image)

    i2t, t2i = score(ranked.i2t), score(ranked.t2i)
    result = {key: (i2t if key.startswith("i2t") else t2i)[key] for key in i2t if key != "rsum"}
    result["rsum"] = sum(result[key] for key in _RECALL_KEYS)
    return result


def _row(k: int | None, metrics: dict, pairs: int, seconds: float, full_pairs: int) -> dict:
    return {"k": k, "i2t_r1": metrics["i2t_r1"], "t2i_r1": metrics["t2i_r1"], "rsum": metrics["rsum"],
            "xattn_pairs": pairs, "pair_share": pairs / full_pairs, "seconds": seconds}


def _rows_mask(index: Tensor, shape: tuple[int, int]) -> Tensor:
    """Boolean (rows, cols) matrix, True at each row's listed columns."""
    chosen = torch.zeros(shape, dtype=torch.bool, device=index.device)
    return chosen.scatter_(1, index, True)


def _within_folds(cosines: Tensor, fold_images: int, captions_per_image: int) -> Tensor:
    """Cosines of pairs in different folds set below every real cosine."""
    n_img, n_cap = cosines.shape
    if fold_images < 1 or n_img % fold_images:
        raise ValueError(f"{n_img} images do not split into folds of {fold_images}")
    fold_of_image = torch.arange(n_img, device=cosines.device) // fold_images
    fold_of_caption = torch.arange(n_cap, device=cosines.device) // (fold_images * captions_per_image)
    return cosines.masked_fill(fold_of_image[:, None] != fold_of_caption[None, :], -2.0)


def _full_pairs(n_img: int, n_cap: int, folds: int | None, encoded: Encoded) -> int:
    """Pairs that full scoring under the protocol needs (COCO 1K: only the folds' blocks)."""
    if folds is None:
        return n_img * n_cap
    return (n_img // folds) * folds * folds * encoded.captions_per_image


def _device(encoded: Encoded, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return pick_device(str(device))
    where = encoded.image_levels[0].device
    return where if where.type != "cpu" else pick_device()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
