"""Stacked cross-attention (SCAN, Lee et al. 2018): HAT's similarity at one level, and the sum.

For an image with regions v_1..v_R and a caption with words w_1..w_W (padding excluded),
direction "i2t" (the paper's default) lets every region attend to the words:

    s_rw     = v_r . w_w                              raw region-word scores
    a_rw     = LeakyReLU_0.1(s_rw) / ||LeakyReLU_0.1(s_{:,w})||_2   normalised over the queries
    alpha_rw = softmax_w(lambda * a_rw)               attention of region r over the words
    c_r      = sum_w alpha_rw w_w                     attended context
    S(I, T)  = mean_r cos(v_r, c_r)

Direction "t2i" swaps the roles (words are queries, regions the context, mean over the real
words). HAT's score of a pair is the (weighted) sum of this score over its levels.

The computation is vectorised over blocks of (image, caption) pairs; ``chunk_size`` bounds the
number of pairs in a block and so the peak memory (about 4 * chunk_size * R * W floats).
The attended context is never built: its dot product with the query is sum_w alpha_rw s_rw and
its squared norm is alpha_r G alpha_r^T with G the small Gram matrix of the context tokens.

    sims = xattn_similarity(img_feats, cap_feats, cap_mask, direction="i2t")  # (N_img, N_cap)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LEAKY_SLOPE = 0.1
EPS = 1e-8
MAX_UNSHIFTED_LAMBDA = 20.0  # above it the softmax subtracts its maximum (exp(2 * 20) fits float32)


def xattn_similarity(
    images: Tensor,
    captions: Tensor,
    caption_mask: Tensor,
    direction: str = "i2t",
    lambda_softmax: float = 9.0,
    chunk_size: int = 1024,
) -> Tensor:
    """SCAN similarity of every image with every caption: (N_img, R, D) x (N_cap, W, D) -> (N_img, N_cap)."""
    _check_inputs(images, captions, caption_mask, direction, chunk_size)
    mask = caption_mask.to(device=captions.device, dtype=torch.bool)  # (N_cap, W)
    captions = captions.masked_fill(~mask[..., None], 0.0)  # padding may hold anything, even NaN
    # Captions sorted by length, so that each block is cut to its longest caption: padding
    # costs no work. The result is written back to each caption's own column.
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    lengths = (mask * positions).amax(dim=1)  # (N_cap,) index of the last real token + 1
    order = torch.argsort(lengths)
    captions, maskf, lengths = captions[order], mask[order].float(), lengths[order]
    n_img, n_cap = images.shape[0], captions.shape[0]
    step_i, step_c = _block_shape(n_img, n_cap, chunk_size)
    out = torch.empty(n_img, n_cap, device=images.device, dtype=torch.float32)
    for c in range(0, n_cap, step_c):
        width = int(lengths[min(c + step_c, n_cap) - 1])
        cap, cap_mask, cols = captions[c : c + step_c, :width], maskf[c : c + step_c, :width], order[c : c + step_c]
        for i in range(0, n_img, step_i):
            img = images[i : i + step_i]
            if direction == "i2t":  # regions attend to words -> (C, I)
                out[i : i + step_i, cols] = _score_block(img, cap, None, cap_mask, lambda_softmax).T
            else:  # words attend to regions -> (I, C)
                out[i : i + step_i, cols] = _score_block(cap, img, cap_mask, None, lambda_softmax)
    return out


def hierarchical_similarity(
    image_levels: Sequence[Tensor],
    caption_levels: Sequence[Tensor],
    caption_mask: Tensor,
    weights: Sequence[float] | None = None,
    direction: str = "i2t",
    lambda_softmax: float = 9.0,
    chunk_size: int = 1024,
) -> Tensor:
    """HAT's score: the weighted sum over levels of ``xattn_similarity`` -> (N_img, N_cap)."""
    if len(image_levels) != len(caption_levels):
        raise ValueError(f"{len(image_levels)} image levels but {len(caption_levels)} caption levels")
    weights = weights if weights is not None else [1.0] * len(image_levels)
    if len(weights) != len(image_levels):
        raise ValueError(f"{len(weights)} weights for {len(image_levels)} levels")
    total = None
    for w, img, cap in zip(weights, image_levels, caption_levels):
        s = w * xattn_similarity(img, cap, caption_mask, direction, lambda_softmax, chunk_size)
        total = s if total is None else total + s
    return total


def _score_block(query: Tensor, context: Tensor, query_mask: Tensor | None, context_mask: Tensor | None,
                 lam: float) -> Tensor:
    """Queries attend to context tokens: (Nq, Q, D) x (Nk, K, D) -> (Nk, Nq), padding zeroed.

    i2t calls it with regions as queries and words as context, t2i the other way round.
    Layout (Nk, K, Nq, Q) keeps every reduction either contiguous (over Q) or over dim 1
    with contiguous rows, and makes the Gram product a plain batched matmul.
    """
    n_q, len_q, dim = query.shape
    n_k, len_k, _ = context.shape
    # In-place ops save memory traffic when scoring a gallery; training needs the autograd-safe ones.
    track = torch.is_grad_enabled() and (query.requires_grad or context.requires_grad)
    mul, exp = (torch.mul, torch.exp) if track else (torch.Tensor.mul_, torch.Tensor.exp_)
    s = (context.reshape(n_k * len_k, dim) @ query.reshape(n_q * len_q, dim).T).float()
    s = s.view(n_k, len_k, n_q, len_q)  # (Nk, K, Nq, Q) raw token scores
    a = F.leaky_relu(s, LEAKY_SLOPE)  # padding queries are zero vectors: s = a = 0 there
    # For each context token: L2 over the queries, then scale by lambda. |a| <= 1 before the
    # scaling, so exp(lambda * a) cannot overflow for moderate lambda: no max shift is needed.
    a = mul(a, lam / (torch.linalg.vector_norm(a, dim=-1, keepdim=True) + EPS))
    if lam > MAX_UNSHIFTED_LAMBDA:
        a = a - a.amax(dim=1, keepdim=True)
    e = exp(a)  # (Nk, K, Nq, Q) unnormalised attention over the context axis K
    if context_mask is not None:
        e = mul(e, context_mask[:, :, None, None])  # padding context tokens get no attention
    # cos(q, c) with c = sum_k e_k x_k / Z: the softmax's Z cancels in the cosine, so
    # q.c ~ sum_k e_k s_k and |c|^2 ~ e^T G e with G the Gram matrix of the context tokens.
    gram = (context @ context.transpose(1, 2)).float()  # (Nk, K, K)
    ge = torch.bmm(gram, e.reshape(n_k, len_k, n_q * len_q)).view_as(e)  # (Nk, K, Nq, Q)
    ctx_norm = mul(ge, e).sum(1).clamp_min(0).sqrt()  # (Nk, Nq, Q) |c| * Z
    dot = mul(s, e).sum(1)  # (Nk, Nq, Q) q.c * Z
    q_norm = torch.linalg.vector_norm(query.float(), dim=-1)  # (Nq, Q)
    cos = dot / (q_norm * ctx_norm).clamp_min(EPS)  # (Nk, Nq, Q)
    if query_mask is None:
        return cos.mean(-1)
    return (cos * query_mask).sum(-1) / query_mask.sum(-1)  # mean over real queries


def _block_shape(n_img: int, n_cap: int, chunk_size: int) -> tuple[int, int]:
    """Images and captions per block so that a block holds at most ``chunk_size`` pairs."""
    step_i = max(1, min(n_img, math.isqrt(chunk_size)))
    step_c = max(1, min(n_cap, chunk_size // step_i))
    step_i = max(1, min(n_img, chunk_size // step_c))  # give back what captions did not use
    return step_i, step_c


def _check_inputs(images: Tensor, captions: Tensor, mask: Tensor, direction: str, chunk_size: int) -> None:
    if images.dim() != 3 or captions.dim() != 3:
        raise ValueError(f"images (N_img, R, D) and captions (N_cap, W, D) must be 3-D, "
                         f"got {tuple(images.shape)} and {tuple(captions.shape)}")
    if images.shape[-1] != captions.shape[-1]:
        raise ValueError(f"feature widths differ: images D={images.shape[-1]}, captions D={captions.shape[-1]}")
    if mask.shape != captions.shape[:2]:
        raise ValueError(f"caption_mask {tuple(mask.shape)} must be (N_cap, W) = {tuple(captions.shape[:2])}")
    if direction not in ("i2t", "t2i"):
        raise ValueError(f"direction must be 'i2t' or 't2i', not {direction!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if captions.shape[0] and not bool(mask.bool().any(-1).all()):
        raise ValueError("every caption needs at least one real token (a row of caption_mask is all False)")
