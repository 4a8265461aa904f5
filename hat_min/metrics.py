"""Recall@K, median and mean rank, and the MSCOCO 1K five-fold protocol.

``sims`` is an (N_img, N_cap) similarity matrix; caption j belongs to image
``j // captions_per_image`` (five captions per image in Flickr30K and MSCOCO).

- image-to-text: an image is a hit at K if any of its captions ranks in the top K;
- text-to-image: a caption is a hit at K if its image ranks in the top K;
- rSum: the sum of the six recalls (percentages).

Ties count against the model: a ground truth's rank is the number of wrong candidates
scoring at least as high as it, so a constant similarity matrix scores at chance, not 100 %.

    r = recall_at_k(sims)                      # {"i2t_r1": ..., "t2i_r10": ..., "rsum": ...}
    r = coco_1k(sims_5k)                       # the mean over five folds of 1,000 images
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_ROWS_PER_STEP = 256  # images compared at once: bounds the memory of the rank counts


def retrieval_ranks(sims: Tensor, captions_per_image: int = 5) -> tuple[Tensor, Tensor]:
    """0-based rank of the best ground truth: (N_img,) for i2t and (N_cap,) for t2i."""
    sims = _check_sims(sims, captions_per_image)
    n_img, n_cap = sims.shape
    owner = torch.arange(n_cap, device=sims.device) // captions_per_image  # (N_cap,) image of caption
    i2t = torch.empty(n_img, dtype=torch.long, device=sims.device)
    for start in range(0, n_img, _ROWS_PER_STEP):
        rows = sims[start : start + _ROWS_PER_STEP]  # (n, N_cap)
        own = owner[None, :] == torch.arange(start, start + rows.shape[0], device=sims.device)[:, None]
        best = rows.masked_fill(~own, float("-inf")).amax(dim=1, keepdim=True)  # (n, 1) best true caption
        i2t[start : start + rows.shape[0]] = ((rows >= best) & ~own).sum(dim=1)
    true_score = sims[owner, torch.arange(n_cap, device=sims.device)]  # (N_cap,)
    t2i = (sims >= true_score[None, :]).sum(dim=0) - 1  # minus the true image itself
    return i2t, t2i


def recall_at_k(sims: Tensor, captions_per_image: int = 5, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K in percent for both directions, rSum, and median / mean rank (1-based)."""
    i2t, t2i = retrieval_ranks(sims, captions_per_image)
    result: dict[str, float] = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            result[f"{name}_r{k}"] = 100.0 * (ranks < k).float().mean().item()
    result["rsum"] = sum(result.values())
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        result[f"{name}_medr"] = (ranks.float().median() + 1).item()
        result[f"{name}_meanr"] = (ranks.float().mean() + 1).item()
    return result


def coco_1k(
    sims: Tensor, captions_per_image: int = 5, fold_images: int = 1000, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """MSCOCO "1K": the mean of ``recall_at_k`` over consecutive folds of ``fold_images`` images."""
    n_img = sims.shape[0]
    if fold_images < 1 or n_img % fold_images:
        raise ValueError(f"{n_img} images do not split into folds of {fold_images}")
    fold_caps = fold_images * captions_per_image
    folds = [
        recall_at_k(sims[f * fold_images : (f + 1) * fold_images, f * fold_caps : (f + 1) * fold_caps],
                    captions_per_image, ks)
        for f in range(n_img // fold_images)
    ]
    return {key: sum(f[key] for f in folds) / len(folds) for key in folds[0]}


def _check_sims(sims: Tensor, captions_per_image: int) -> Tensor:
    if sims.dim() != 2:
        raise ValueError(f"sims must be (N_img, N_cap), got shape {tuple(sims.shape)}")
    if captions_per_image < 1 or sims.shape[1] != sims.shape[0] * captions_per_image:
        raise ValueError(f"sims has {sims.shape[1]} captions for {sims.shape[0]} images, "
                         f"not {captions_per_image} per image")
    if not torch.isfinite(sims).all():
        raise ValueError("sims holds NaN or infinite values")
    return sims.float()
