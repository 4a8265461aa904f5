"""The SCAN score of ``hat_min.scan`` for a whole gallery, fast: "blocked" and "fused" (and "auto").

``hat_min/scan.py`` holds the equations (``scan_eager``); this module computes the same numbers for
thousands of pairs at once, close to the one matmul it cannot avoid (all region-word dot products),
and is tested against ``scan_eager`` on seeded inputs (tests/test_scan.py, tests/test_kernels.py).

- Blocks of (image, caption) pairs: one matmul per block gives every s of the block, then a
  few element-wise passes over it. ``chunk_size`` bounds the pairs of a block and so the
  memory (a few tensors of chunk_size * R * W floats); on a CPU a block also holds at most
  ``CPU_BLOCK_SCORES`` scores, so that it stays in the caches between passes.
- The attended context is never built: its dot product with the query is sum_w alpha_rw s_rw
  and its squared norm is alpha_r G alpha_r^T, with G the small Gram matrix of the context
  tokens (once per image or caption). The softmax denominator cancels in the cosine, and
  exp(lambda * a) cannot overflow for lambda <= 20 since |a| <= 1: the softmax is one exp.
- Captions sorted by length, so that each block is cut to its longest caption: padding costs
  almost no work. Padding tokens are zero vectors, so they add nothing to any sum: no masks.
- Layouts in which every pass is contiguous or runs over a long inner axis: (captions, words,
  images, regions) in i2t, (images, regions, words, captions) in t2i.
- Without gradients the passes run in place; with gradients (training) the same formulas run
  out of place, and blocks are cut with ``split``, not slicing: under autograd every slice's
  backward writes into a zeroed copy of the whole tensor (about a tenth of a training step on a
  CPU at batch 64), a split's gathers its blocks once.
- "fused": on a CPU, t2i without gradients hands the element-wise work to two C passes
  (``kernels.py``: built once per machine in under a second, then cached), which also halve the
  Gram product by symmetry. "auto" uses them where they apply; "blocked" never does.

    sims = scan_blocked(img_feats, cap_feats, cap_mask, "i2t", 9.0)                    # (N_img, N_cap)
    some = scan_blocked(img_feats, cap_feats, cap_mask, "t2i", 9.0, pairs=(i, c))       # (P,) those pairs only

Inputs come checked from ``hat_min.scan.scan_score`` (the mask boolean, pairs in range).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..scan import EPS, LEAKY_SLOPE
from . import kernels
from .kernels import MAX_UNSHIFTED_LAMBDA

CPU_BLOCK_SCORES = 512 * 49 * 16  # region-word scores per block on a CPU (fastest measured: 512 pairs of R=49, W=16)
FUSED_BLOCK_SCORES = 1024 * 49 * 16  # the same for the fused t2i kernels (kernels.py): 32 images x 32 captions
FUSED_CAPTIONS = 32  # captions per block of the fused kernels, which vectorise over the captions


def scan_blocked(images: Tensor, captions: Tensor, mask: Tensor, direction: str = "i2t", lam: float = 9.0,
                 chunk_size: int = 1024, pairs: tuple[Tensor, Tensor] | None = None,
                 fused: bool | None = False) -> Tensor:
    """SCAN score in blocks: (N_img, R, D) x (N_cap, W, D), bool mask (N_cap, W) -> (N_img, N_cap), or (P,) for
    ``pairs``. ``fused``: True, the C kernels or a ValueError saying why not; None, where they apply; False, never."""
    inplace = not _tracked(images, captions)
    why = kernels.unusable(images, captions, lam, inplace) if direction == "t2i" else "they score direction t2i only"
    if fused and why:
        raise ValueError(f"scan_implementation 'fused' cannot score these features: {why}; use 'auto' or 'blocked'")
    use = fused is not False and why is None
    if pairs is None:
        return _full(images, captions, mask, direction, lam, chunk_size, inplace, use)
    return _pairs(images, captions, mask, *pairs, direction, lam, chunk_size, inplace, use)


def _full(images: Tensor, captions: Tensor, mask: Tensor, direction: str, lam: float, chunk_size: int,
          inplace: bool, fused: bool) -> Tensor:
    """Every image with every caption: -> (N_img, N_cap)."""
    ends = caption_ends(mask)
    order = torch.argsort(ends, stable=True)  # captions by length: each block is cut to its longest caption
    n_img, n_cap = images.shape[0], captions.shape[0]
    step_i, step_c = _block_shape(n_img, n_cap, _block_pairs(images, captions, chunk_size, fused), fused)

    if direction == "i2t":  # regions attend to words
        captions = captions[order].masked_fill_(~mask[order, :, None], 0.0)  # padding may hold anything, even NaN
        mask, ends = mask[order], ends[order].tolist()
        grams, region_norms = _gram(captions), _token_norms(images)  # (N_cap, W, W), (N_img, R)
        sims = torch.empty(n_cap, n_img, device=images.device, dtype=torch.float32)  # sorted captions x images
        image_blocks = list(zip(images.split(step_i), region_norms.split(step_i)))  # (bi, R, D), (bi, R)
        caption_blocks = zip(captions.split(step_c), grams.split(step_c), mask.split(step_c))
        for c, (cap, gram, cap_mask) in zip(range(0, n_cap, step_c), caption_blocks):
            cols, width = slice(c, c + step_c), ends[min(c + step_c, n_cap) - 1]
            cap, gram = cap[:, :width].contiguous(), gram[:, :width, :width].contiguous()  # (bc, w, D), (bc, w, w)
            pad = ~cap_mask[:, :width] if lam > MAX_UNSHIFTED_LAMBDA else None
            for i, (image, norms) in zip(range(0, n_img, step_i), image_blocks):
                sims[cols, i:i + step_i] = _i2t_block(image, cap, gram, norms, pad, lam, inplace)
        return sims.T[:, torch.argsort(order)]  # back to the caller's caption order

    # t2i: words attend to regions
    grams, counts = _gram(images), mask[order].sum(1).float()  # (N_img, R, R); (N_cap,) real words, sorted
    sims = torch.empty(n_img, n_cap, device=images.device, dtype=torch.float32)  # images x sorted captions
    if fused:  # G's upper triangles in the kernels' layout, and one scratch buffer for all blocks
        grams = kernels.upper_gram(grams)
        scratch = images.new_empty(kernels.scratch_size(step_i, images.shape[1], captions.shape[1], step_c))
    image_blocks = list(zip(images.split(step_i), grams.split(step_i)))  # (bi, R, D), (bi, R, R) or the kernels' G
    for c, (words, norms) in zip(range(0, n_cap, step_c), _word_major(captions, mask, order, ends, step_c)):
        cols = slice(c, c + step_c)
        for i, (image, gram) in zip(range(0, n_img, step_i), image_blocks):
            rows = slice(i, i + step_i)
            if fused:  # the same formulas in two C passes, written straight into sims
                kernels.t2i_block(image, words, gram, norms, counts[cols], lam, sims[rows, cols], scratch)
            else:
                sims[rows, cols] = _t2i_block(image, words, gram, norms, counts[cols], lam, inplace)
    return sims[:, torch.argsort(order)]  # back to the caller's caption order


def _pairs(images: Tensor, captions: Tensor, mask: Tensor, image_index: Tensor, caption_index: Tensor,
           direction: str, lam: float, chunk_size: int, inplace: bool, fused: bool) -> Tensor:
    """Chosen pairs only: (P,) image and caption indices -> (P,) scores, equal to the matrix entries.

    Pairs are grouped by image, and each image's captions are scored in length-sorted blocks of at most
    ``chunk_size`` (a reranker's candidates).
    """
    ends = caption_ends(mask)
    # pairs sorted by image, then by caption length: runs of one image's captions of similar length
    order = torch.argsort(image_index * (mask.shape[1] + 1) + ends[caption_index], stable=True)
    by_image = image_index[order].tolist()
    step = _block_pairs(images, captions, chunk_size, fused)
    captions = captions.masked_fill(~mask[..., None], 0.0)  # once, not per block: padding may hold NaN
    if direction == "i2t":  # each caption's Gram matrix once, not once per pair
        region_norms, grams = _token_norms(images), _gram(captions)  # (N_img, R), (N_cap, W, W)
    else:
        word_norms, counts = _token_norms(captions), mask.sum(1).float()  # (N_cap, W), (N_cap,)
        if fused:
            scratch = images.new_empty(kernels.scratch_size(1, images.shape[1], captions.shape[1], step))
            out = images.new_empty(step)
    scores = torch.empty(len(order), device=images.device, dtype=torch.float32)
    start = 0
    while start < len(order):  # a block: one image and up to ``step`` of its captions
        image, stop = by_image[start], min(start + step, len(order))
        while by_image[stop - 1] != image:
            stop -= 1
        where = order[start:stop]
        ids, rows = caption_index[where], slice(image, image + 1)
        width = int(ends[ids[-1]])
        if direction == "i2t":
            cap = captions[:, :width].index_select(0, ids)  # (bc, w, D)
            pad = ~mask[ids, :width] if lam > MAX_UNSHIFTED_LAMBDA else None
            gram = grams[:, :width, :width].index_select(0, ids)  # (bc, w, w)
            scores[where] = _i2t_block(images[rows], cap, gram, region_norms[rows], pad, lam, inplace)[:, 0]
        else:
            words = captions.transpose(0, 1)[:width].index_select(1, ids)  # (w, bc, D) word-major
            norms = word_norms[:, :width].index_select(0, ids).T  # (w, bc)
            context = images[rows]  # (1, R, D)
            if fused:
                kernels.t2i_block(context, words, kernels.upper_gram(_gram(context)), norms,
                                  counts[ids], lam, out[:len(ids)].view(1, -1), scratch)
                scores[where] = out[:len(ids)]
            else:
                scores[where] = _t2i_block(context, words, _gram(context), norms, counts[ids], lam, inplace)[0]
        start = stop
    return scores


# ----------------------------------------------------------------------------- one block of pairs
def _i2t_block(images: Tensor, captions: Tensor, gram: Tensor, region_norms: Tensor, pad: Tensor | None,
               lam: float, inplace: bool) -> Tensor:
    """Regions attend to words: (bi, R, D) images x (bc, w, D) captions -> (bc, bi) mean cosines.

    ``gram`` (bc, w, w) of the words, ``region_norms`` (bi, R); ``pad`` (bc, w) True on padding,
    only for lambda > 20 (where the softmax subtracts its maximum over the real words).
    """
    n_i, n_r, dim = images.shape
    n_c, n_w, _ = captions.shape
    s = (captions.reshape(n_c * n_w, dim) @ images.reshape(n_i * n_r, dim).T).float()
    s = s.view(n_c, n_w, n_i, n_r)  # raw scores; padding words are zero vectors: s = 0 there
    a = F.leaky_relu(s, LEAKY_SLOPE)
    norms = torch.linalg.vector_norm(a, dim=3, keepdim=True)  # (bc, w, bi, 1) L2 over the regions
    e = _scaled(a, norms, lam, inplace)  # lambda * a / ||a||
    if pad is not None:
        e = e.masked_fill(pad[:, :, None, None], float("-inf"))
        e = e - e.amax(dim=1, keepdim=True)
    e = e.exp_() if inplace else e.exp()  # (bc, w, bi, R) unnormalised attention over the words
    cos = _cosines(s, e, gram, region_norms.reshape(-1), inplace)  # (bc, bi * R)
    return cos.view(n_c, n_i, n_r).mean(-1)


def _t2i_block(images: Tensor, words: Tensor, gram: Tensor, word_norms: Tensor, counts: Tensor,
               lam: float, inplace: bool) -> Tensor:
    """Words attend to regions: (bi, R, D) images x (w, bc, D) word-major captions -> (bi, bc) mean cosines.

    ``gram`` (bi, R, R) of the regions, ``word_norms`` (w, bc) (zero on padding), ``counts`` (bc,)
    the real words of each caption.
    """
    n_i, n_r, dim = images.shape
    n_w, n_c, _ = words.shape
    s = (images.reshape(n_i * n_r, dim) @ words.reshape(n_w * n_c, dim).T).float()
    s = s.view(n_i, n_r, n_w, n_c)  # raw scores; padding words are zero vectors: s = 0 there
    a = F.leaky_relu(s, LEAKY_SLOPE)
    squares = a * a  # (bi, R, w, bc), reused by _cosines for G e when in place
    norms = squares.sum(2, keepdim=True).add_(EPS * EPS).sqrt_()  # (bi, R, 1, bc) L2 over the words
    e = _scaled(a, norms, lam, inplace)
    if lam > MAX_UNSHIFTED_LAMBDA:  # no padding among the regions: a plain max
        e = e - e.amax(dim=1, keepdim=True)
    e = e.exp_() if inplace else e.exp()  # (bi, R, w, bc) unnormalised attention over the regions
    cos = _cosines(s, e, gram, word_norms.reshape(-1), inplace, scratch=squares)  # (bi, w * bc), 0 on padding
    return cos.view(n_i, n_w, n_c).sum(1) / counts  # mean over the real words


def _scaled(a: Tensor, norms: Tensor, lam: float, inplace: bool) -> Tensor:
    """lambda * a / (||a|| + eps), the norm broadcast over the query axis."""
    if not inplace:
        return a * (lam / (norms + EPS))
    return a.mul_(torch.div(lam, norms.add_(EPS), out=norms))


def _cosines(s: Tensor, e: Tensor, gram: Tensor, query_norms: Tensor, inplace: bool,
             scratch: Tensor | None = None) -> Tensor:
    """cos(q, c) of every query token from raw scores s and attention e, both (Nk, K, ...): -> (Nk, rest).

    With c ~ sum_k e_k x_k (the softmax's denominator cancels): q.c ~ sum_k e_k s_k and
    |c|^2 ~ e^T G e, G (Nk, K, K) the Gram matrix of the context tokens. In place, G e goes into
    ``scratch`` (a finished tensor of e's size) when there is one.
    """
    n_k, n_ctx = e.shape[:2]
    e = e.reshape(n_k, n_ctx, -1)  # (Nk, K, N)
    if not inplace:
        squared = (torch.bmm(gram, e) * e).sum(1).clamp_min(0)  # (Nk, N) |c|^2
        dot = (s.reshape_as(e) * e).sum(1)  # (Nk, N) q.c
        return dot / (squared.sqrt() * query_norms).clamp_min(EPS)
    ge = torch.bmm(gram, e) if scratch is None else torch.bmm(gram, e, out=scratch.view_as(e))  # (Nk, K, N)
    squared = ge.mul_(e).sum(1)  # (Nk, N) |c|^2
    dot = s.view_as(e).mul_(e).sum(1)  # (Nk, N) q.c
    return dot.div_(squared.sqrt_().mul_(query_norms).clamp_min_(EPS))


# ----------------------------------------------------------------------------- helpers
def _word_major(captions: Tensor, mask: Tensor, order: Tensor, ends: Tensor,
                step: int) -> list[tuple[Tensor, Tensor]]:
    """Captions in ``order``, in blocks of ``step``, each cut to its longest caption and word-major, from one gather:
    [((w, bc, D) words with padding zeroed, (w, bc) their norms), ...]."""
    n_cap, n_words, dim = captions.shape
    widths = ends[order].tolist()
    positions = torch.arange(n_words, device=captions.device)
    index, shapes = [], []
    for c in range(0, n_cap, step):
        ids, width = order[c:c + step], widths[min(c + step, n_cap) - 1]
        index.append((ids[None, :] * n_words + positions[:width, None]).reshape(-1))  # rows of (N_cap * W, D)
        shapes.append((width, len(ids)))
    if not index:  # no captions
        return []
    index = torch.cat(index)
    rows = captions.reshape(-1, dim).index_select(0, index)  # (sum of w * bc, D)
    rows[~mask.reshape(-1)[index]] = 0.0  # padding may hold anything, even NaN
    sizes = [width * n for width, n in shapes]
    return [(words.view(width, n, dim), norms.view(width, n))
            for (width, n), words, norms in zip(shapes, rows.split(sizes), _token_norms(rows).split(sizes))]


def _token_norms(tokens: Tensor) -> Tensor:
    """L2 norm of every token in float32, half-precision inputs without a float32 copy: (..., D) -> (...)."""
    half = tokens.dtype in (torch.float16, torch.bfloat16)
    return torch.linalg.vector_norm(tokens, dim=-1, dtype=torch.float32 if half else None).float()


def _gram(tokens: Tensor) -> Tensor:
    """Gram matrices of each item's tokens in float32: (N, T, D) -> (N, T, T)."""
    return (tokens @ tokens.transpose(1, 2)).float()


def caption_ends(mask: Tensor) -> Tensor:
    """Index of each caption's last real token + 1: (N_cap, W) -> (N_cap,) (evaluation sorts captions by it)."""
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (mask * positions).amax(dim=1)


def _tracked(images: Tensor, captions: Tensor) -> bool:
    """True when autograd records the scoring (training): then no pass may run in place."""
    return torch.is_grad_enabled() and (images.requires_grad or captions.requires_grad)


def _block_pairs(images: Tensor, captions: Tensor, chunk_size: int, fused: bool = False) -> int:
    """Pairs per block: ``chunk_size``, and on a CPU at most what keeps a block in the caches."""
    if images.device.type != "cpu":
        return chunk_size
    most = FUSED_BLOCK_SCORES if fused else CPU_BLOCK_SCORES
    return max(1, min(chunk_size, most // max(1, images.shape[1] * captions.shape[1])))


def _block_shape(n_img: int, n_cap: int, chunk_size: int, fused: bool = False) -> tuple[int, int]:
    """Images and captions per block: at most ``chunk_size`` pairs, about twice as many captions as images
    (fastest measured, both directions), and blocks of equal size rather than a small remainder.
    The fused kernels vectorise over the captions: 32 of them a block, as many images as fit."""
    if fused:
        step_c = max(1, min(n_cap, FUSED_CAPTIONS))
        return _even_step(n_img, max(1, chunk_size // step_c)), step_c
    step_i = _even_step(n_img, max(1, math.isqrt(max(1, chunk_size // 2))))
    step_c = _even_step(n_cap, max(1, chunk_size // step_i))
    step_i = _even_step(n_img, max(1, chunk_size // step_c))  # give back what the captions did not use
    return step_i, step_c


def _even_step(n: int, most: int) -> int:
    """The smallest step that cuts n items into as few blocks as steps of ``most`` would."""
    blocks = -(-n // max(1, min(n, most))) if n else 1
    return max(1, -(-n // blocks))
