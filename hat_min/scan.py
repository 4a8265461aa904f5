"""The score of one level (stacked cross-attention, SCAN: Lee et al. 2018), HAT's sum over levels, and the switch
between the implementations of that score.

For an image with regions v_1..v_R and a caption with words w_1..w_W (padding excluded), direction
"i2t" (the paper's default) lets every region attend to the words:

    s_rw     = v_r . w_w                                        raw region-word scores
    a_rw     = LeakyReLU_0.1(s_rw) / ||LeakyReLU_0.1(s_{:,w})||_2   for each word, L2 over the regions (queries)
    alpha_rw = softmax_w(lambda * a_rw)                         attention of region r over the words
    c_r      = sum_w alpha_rw w_w                               the words as region r sees them
    S(I, T)  = mean_r cos(v_r, c_r)

Direction "t2i" swaps the roles: words are the queries, regions the context, the mean runs over the
real words. HAT's score of a pair is the weighted sum of S over its levels (``hierarchical_score``).

One score, several implementations, chosen by ``HATConfig.scan_implementation`` (as transformers' ``attn_implementation``):

- "eager": ``scan_eager`` below, the equations one line each, for a batch of pairs: read this one;
- "blocked": the same numbers for thousands of pairs, in blocks that never build c (``hat_min/fast/blocked.py``);
- "fused": "blocked" with its element-wise passes in C (``hat_min/fast/kernels.py``: t2i, CPU, no autograd);
- "auto" (the default): "fused" where it applies, else "blocked".

The fast implementations register themselves in ``IMPLEMENTATIONS`` when ``hat_min`` is imported
(``hat_min/fast/__init__.py``), so this module imports none of them; tests/test_scan.py holds all of them
to ``scan_eager``, and ``scan_eager`` to a one-pair-at-a-time loop, on seeded inputs.

    sims = scan_score(images, captions, mask, "i2t", 9.0)                 # (N_img, R, D) x (N_cap, W, D) -> (N_img, N_cap)
    some = scan_score(images, captions, mask, pairs=(img_idx, cap_idx))    # (P,) those pairs only
    total = hierarchical_score(image_levels, caption_levels, mask, weights=(1.0, 1.0, 1.0))
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LEAKY_SLOPE = 0.1  # the negative slope of the LeakyReLU on the raw scores
EPS = 1e-8  # keeps the divisions finite when a column of scores is all zero
IMPLEMENTATIONS: dict[str, Callable[..., Tensor]] = {}  # name -> fn(images, captions, mask, direction, lam, chunk_size, pairs)


def attention(queries: Tensor, context: Tensor, query_mask: Tensor, context_mask: Tensor, lam: float) -> Tensor:
    """Each query's attention over the context, for P pairs: (P, Q, D), (P, K, D), masks (P, Q), (P, K) -> (P, Q, K)."""
    s = queries @ context.transpose(1, 2)  # (P, Q, K) s_qk = q_q . k_k
    a = F.leaky_relu(s, LEAKY_SLOPE) * query_mask[:, :, None]  # padded queries stay out of the norm
    a = a / (torch.linalg.vector_norm(a, dim=1, keepdim=True) + EPS)  # for each context token k: L2 over the queries
    logits = (lam * a).masked_fill(~context_mask[:, None, :], float("-inf"))  # padded context gets no attention
    return torch.softmax(logits, dim=2)  # (P, Q, K) alpha, each query's row sums to 1


def scan_pairs(regions: Tensor, words: Tensor, mask: Tensor, direction: str = "i2t", lam: float = 9.0) -> Tensor:
    """The SCAN score of P aligned pairs: regions (P, R, D), words (P, W, D), word mask (P, W) -> (P,)."""
    every_region = torch.ones(regions.shape[:2], dtype=torch.bool, device=regions.device)  # (P, R) no padding
    if direction == "i2t":  # regions query the words
        queries, context, query_mask, context_mask = regions, words, every_region, mask
    else:  # t2i: words query the regions
        queries, context, query_mask, context_mask = words, regions, mask, every_region
    alpha = attention(queries, context, query_mask, context_mask, lam)  # (P, Q, K)
    attended = alpha @ context  # (P, Q, D) c_q = sum_k alpha_qk k_k
    cos = F.cosine_similarity(queries, attended, dim=-1, eps=EPS)  # (P, Q) cos(q_q, c_q)
    return (cos * query_mask).sum(1) / query_mask.sum(1)  # (P,) the mean over the real queries


def scan_eager(images: Tensor, captions: Tensor, mask: Tensor, direction: str = "i2t", lam: float = 9.0,
               chunk_size: int | None = None, pairs: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """The equations for a gallery, one image against every caption at a time: -> (N_img, N_cap), or (P,) for
    ``pairs`` = (image indices, caption indices). ``chunk_size`` is the fast implementations' (unused here)."""
    captions = captions.masked_fill(~mask[..., None], 0.0)  # padding may hold anything, even NaN
    if pairs is not None:
        return scan_pairs(images[pairs[0]], captions[pairs[1]], mask[pairs[1]], direction, lam)
    rows = [scan_pairs(v.expand(len(captions), -1, -1), captions, mask, direction, lam) for v in images]  # (N_cap,)
    return torch.stack(rows) if rows else captions.new_zeros(0, len(captions))


IMPLEMENTATIONS["eager"] = scan_eager


def scan_score(images: Tensor, captions: Tensor, caption_mask: Tensor, direction: str = "i2t", lam: float = 9.0,
               implementation: str = "auto", chunk_size: int = 1024,
               pairs: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """SCAN score of every image with every caption at one level, (N_img, R, D) x (N_cap, W, D) -> (N_img, N_cap);
    with ``pairs`` = (image indices, caption indices), of those P pairs only -> (P,)."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown scan implementation {implementation!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    mask = _checked(images, captions, caption_mask, direction, chunk_size)
    if pairs is not None:
        pairs = _checked_pairs(*pairs, images.shape[0], captions.shape[0], images.device)
    return IMPLEMENTATIONS[implementation](images, captions, mask, direction, float(lam), chunk_size=chunk_size,
                                          pairs=pairs)


def hierarchical_score(image_levels: Sequence[Tensor], caption_levels: Sequence[Tensor], caption_mask: Tensor,
                       weights: Sequence[float] | None = None, direction: str = "i2t", lam: float = 9.0,
                       implementation: str = "auto", chunk_size: int = 1024,
                       pairs: tuple[Tensor, Tensor] | None = None, device: torch.device | None = None) -> Tensor:
    """HAT's score: the weighted sum over levels l of ``scan_score`` at level l -> (N_img, N_cap), or (P,).

    ``device``: move each level's features there just before scoring it (features kept in host memory
    for a GPU: one level at a time on the GPU)."""
    weights = [1.0] * len(image_levels) if weights is None else weights
    if not len(image_levels) == len(caption_levels) == len(weights):
        raise ValueError(f"{len(image_levels)} image levels, {len(caption_levels)} caption levels and "
                         f"{len(weights)} weights: need one of each per level")
    total = 0.0
    for weight, images, captions in zip(weights, image_levels, caption_levels):
        if device is not None:
            images, captions = images.to(device), captions.to(device)
        total = total + weight * scan_score(images, captions, caption_mask, direction, lam, implementation,
                                            chunk_size, pairs)
    return total


def _checked(images: Tensor, captions: Tensor, mask: Tensor, direction: str, chunk_size: int) -> Tensor:
    """The boolean caption mask (N_cap, W) on the captions' device, after checking every input."""
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
    mask = mask.to(device=captions.device, dtype=torch.bool)
    if captions.shape[0] and not bool(mask.any(-1).all()):
        raise ValueError("every caption needs at least one real token (a row of caption_mask is all False)")
    return mask


def _checked_pairs(image_index, caption_index, n_img: int, n_cap: int, device) -> tuple[Tensor, Tensor]:
    image_index, caption_index = torch.as_tensor(image_index), torch.as_tensor(caption_index)
    if image_index.dim() != 1 or image_index.shape != caption_index.shape:
        raise ValueError(f"image_index and caption_index must be 1-D and of one length, "
                         f"got {tuple(image_index.shape)} and {tuple(caption_index.shape)}")
    if image_index.is_floating_point() or caption_index.is_floating_point():
        raise ValueError("image_index and caption_index must hold integers")
    for name, index, n in (("image_index", image_index, n_img), ("caption_index", caption_index, n_cap)):
        if len(index) and not (0 <= int(index.min()) and int(index.max()) < n):
            raise ValueError(f"{name} must lie in [0, {n}), got values from {int(index.min())} to {int(index.max())}")
    return image_index.long().to(device), caption_index.long().to(device)
