"""Where a trained HAT looks: the cross-attention weights of one (image, caption) pair, per level.

The fast implementations of the score (``hat_min/fast``) never build the attention weights. To draw
word-to-patch heat maps we need them, for one pair: ``hat_min.scan.attention`` gives them, the same
function that ``scan_eager`` scores with, so the maps are exactly what the model attends with:

    alpha_qk = softmax_k(lambda * a_qk),  a_qk = LeakyReLU_0.1(q_q . x_k) / ||LeakyReLU_0.1(q_{:} . x_k)||_2

``level_scores`` gives the pair's score at every level (``hat_min.scan.scan_pairs``), which tests hold equal
to the model's. Inputs are one pair's features; padding words are dropped.

    maps = attention_maps(image_levels, text_levels, mask, "i2t")   # L x (W_real, R_l): word x region
    grids = token_grid(maps[0])                                      # (W_real, side, side) over the image
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..scan import attention as scan_attention
from ..scan import scan_pairs


def attention(query: Tensor, context: Tensor, lambda_softmax: float = 9.0) -> Tensor:
    """SCAN attention of one pair: queries (Q, D) over context tokens (K, D) -> alpha (Q, K), rows sum to 1."""
    _check_tokens(query, context)
    every_query = torch.ones(1, query.shape[0], dtype=torch.bool, device=query.device)  # (1, Q)
    every_key = torch.ones(1, context.shape[0], dtype=torch.bool, device=query.device)  # (1, K)
    return scan_attention(query.float()[None], context.float()[None], every_query, every_key, lambda_softmax)[0]


def attention_maps(image_levels: Sequence[Tensor], text_levels: Sequence[Tensor], mask: Tensor,
                   direction: str = "i2t", lambda_softmax: float = 9.0) -> list[Tensor]:
    """Attention of one pair at every level as word x region maps: L x (W_real, R_l).

    ``image_levels`` L x (R_l, D), ``text_levels`` L x (W, D) and ``mask`` (W,) are one image's and one
    caption's features. Entry [w, r] is alpha of the model's ``direction``: "i2t", region r's weight on
    word w (each region's weights sum to 1 over the words); "t2i", word w's weight on region r (each
    word's weights sum to 1 over the regions).
    """
    maps = []
    for regions, words in _pair_levels(image_levels, text_levels, mask, direction):
        if direction == "i2t":
            maps.append(attention(regions, words, lambda_softmax).T)  # (R, W) -> (W, R)
        else:
            maps.append(attention(words, regions, lambda_softmax))  # (W, R)
    return maps


def level_scores(image_levels: Sequence[Tensor], text_levels: Sequence[Tensor], mask: Tensor,
                 direction: str = "i2t", lambda_softmax: float = 9.0) -> Tensor:
    """The pair's score at every level: (L,); the model's ``score`` of this pair is their weighted sum."""
    scores = []
    for regions, words in _pair_levels(image_levels, text_levels, mask, direction):
        real = torch.ones(1, words.shape[0], dtype=torch.bool, device=words.device)  # (1, W_real)
        scores.append(scan_pairs(regions.float()[None], words.float()[None], real, direction, lambda_softmax)[0])
    return torch.stack(scores)


def token_grid(values: Tensor) -> Tensor:
    """Region values (..., R) laid out on Swin's square token grid (row by row): -> (..., side, side)."""
    side = math.isqrt(values.shape[-1])
    if side * side != values.shape[-1]:
        raise ValueError(f"{values.shape[-1]} regions do not form a square token grid")
    return values.reshape(*values.shape[:-1], side, side)


def _pair_levels(image_levels: Sequence[Tensor], text_levels: Sequence[Tensor], mask: Tensor, direction: str):
    """(regions (R_l, D), real words (W_real, D)) of every level, after checking the inputs."""
    if direction not in ("i2t", "t2i"):
        raise ValueError(f"direction must be 'i2t' or 't2i', not {direction!r}")
    if len(image_levels) != len(text_levels) or not image_levels:
        raise ValueError(f"{len(image_levels)} image levels and {len(text_levels)} text levels: need the same, >= 1")
    if mask.dim() != 1 or not bool(mask.bool().any()):
        raise ValueError(f"mask must be one caption's (W,) token mask with a real token, got shape {tuple(mask.shape)}")
    keep = mask.bool()
    for regions, words in zip(image_levels, text_levels):
        if regions.dim() != 2 or words.dim() != 2 or words.shape[0] != keep.shape[0]:
            raise ValueError(f"one pair's features: regions (R, D) and words (W, D) with W = len(mask) = "
                             f"{keep.shape[0]}, got {tuple(regions.shape)} and {tuple(words.shape)}")
        yield regions, words[keep.to(words.device)]


def _check_tokens(query: Tensor, context: Tensor) -> None:
    if query.dim() != 2 or context.dim() != 2 or query.shape[1] != context.shape[1]:
        raise ValueError(f"query (Q, D) and context (K, D) must be 2-D with one width, "
                         f"got {tuple(query.shape)} and {tuple(context.shape)}")
    if query.shape[0] == 0 or context.shape[0] == 0:
        raise ValueError("query and context need at least one token each")
