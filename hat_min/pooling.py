"""Global embeddings: one vector per image or caption, pooled from HAT's projected tokens.

HAT scores a pair by token-level cross-attention, which costs R * W dot products per level and
pair. A first retrieval stage needs something cheaper: the mean of the projected tokens of each
level (real words only for captions), L2-normalised, summed over the levels and normalised again.
The cosine of two such vectors ranks candidates for the cross-attention to rerank; an optional
auxiliary contrastive loss on them (``TrainConfig.global_loss_weight``) trains them for it.

    g_img = pooled_embedding(image_feats)                 # L x (N, R_l, D) -> (N, D)
    g_cap = pooled_embedding(text_feats, attention_mask)  # L x (N, W, D), (N, W) -> (N, D)
    cosines = g_img @ g_cap.T                             # (N_img, N_cap)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor


def pooled_embedding(levels: Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
    """L tensors (N, T_l, D) (and an optional (N, T) token mask shared by the levels) -> (N, D), unit norm."""
    if not levels:
        raise ValueError("pooled_embedding needs at least one level")
    if mask is not None and (mask.dim() != 2 or mask.shape[0] != levels[0].shape[0]):
        raise ValueError(f"mask must be (N, T) with N = {levels[0].shape[0]}, got {tuple(mask.shape)}")
    total = None
    for feats in levels:  # (N, T, D)
        feats = feats.float()
        if mask is None:
            mean = feats.mean(dim=1)  # (N, D)
        else:
            m = mask[:, : feats.shape[1]].to(feats.dtype)[..., None]  # (N, T, 1)
            mean = (feats.masked_fill(m == 0, 0.0) * m).sum(1) / m.sum(1).clamp_min(1.0)  # padding may hold NaN
        unit = F.normalize(mean, dim=-1)
        total = unit if total is None else total + unit
    return F.normalize(total, dim=-1)
