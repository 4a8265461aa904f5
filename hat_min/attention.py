"""Where a trained HAT looks: the cross-attention weights of one (image, caption) pair, per level.

``alignment.xattn_similarity`` scores thousands of pairs at once and never builds the attended
context. To draw word-to-patch heat maps we need the attention weights themselves, for one pair,
computed with exactly the formulas of ``alignment.py`` (its docstring; Lee et al. 2018):

    s_qk     = q_q . x_k                                   queries q (regions in i2t), context x (words)
    a_qk     = LeakyReLU_0.1(s_qk) / ||LeakyReLU_0.1(s_{:,k})||_2    normalised over the queries
    alpha_qk = softmax_k(lambda * a_qk)                    each query's attention over the context
    cos_q    = cos(q_q, sum_k alpha_qk x_k)                the pair's score at this level: mean_q cos_q

``level_scores`` recomputes the score from these weights, so a test can check that the maps are
exactly what the model scores. Inputs are the real tokens of one pair (padding dropped).

    maps = attention_maps(image_levels, text_levels, mask, "i2t")   # L x (W_real, R_l): word x region
    grids = token_grid(maps[0])                                      # (W_real, side, side) over the image
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .alignment import EPS, LEAKY_SLOPE


def attention(query: Tensor, context: Tensor, lambda_softmax: float = 9.0) -> Tensor:
    """SCAN attention of one pair: queries (Q, D) over context tokens (K, D) -> alpha (Q, K), rows sum to 1."""
    _check_tokens(query, context)
    s = query.float() @ context.float().T  # (Q, K) raw token scores
    a = F.leaky_relu(s, LEAKY_SLOPE)
    a = a / (torch.linalg.vector_norm(a, dim=0, keepdim=True) + EPS)  # for each context token, L2 over the queries
    return torch.softmax(lambda_softmax * a, dim=1)  # (Q, K) over the context


def attended_cosines(query: Tensor, context: Tensor, alpha: Tensor) -> Tensor:
    """cos(q, c_q) with c_q = sum_k alpha_qk x_k: (Q, D), (K, D), (Q, K) -> (Q,); their mean is the score."""
    _check_tokens(query, context)
    if alpha.shape != (query.shape[0], context.shape[0]):
        raise ValueError(f"alpha {tuple(alpha.shape)} must be (Q, K) = ({query.shape[0]}, {context.shape[0]})")
    attended = alpha @ context.float()  # (Q, D)
    dot = (query.float() * attended).sum(-1)  # (Q,)
    norms = torch.linalg.vector_norm(query.float(), dim=-1) * torch.linalg.vector_norm(attended, dim=-1)
    return dot / norms.clamp_min(EPS)  # the clamp of xattn_similarity


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
    """The pair's score at every level, from the attention weights: (L,); it equals ``xattn_similarity``."""
    scores = []
    for regions, words in _pair_levels(image_levels, text_levels, mask, direction):
        query, context = (regions, words) if direction == "i2t" else (words, regions)
        alpha = attention(query, context, lambda_softmax)  # (Q, K)
        scores.append(attended_cosines(query, context, alpha).mean())
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
