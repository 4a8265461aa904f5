"""HAT's cross-attention score written out literally: one (image, caption) pair at a time, in float64.

This is the formula of docs/method.md (section 3, "Cross-attention at one level"), the stacked
cross-attention of SCAN (Lee et al. 2018) that HAT (Bin et al. 2023) applies at every level,
with nothing done for speed. Read it before ``alignment.py``, which computes the same numbers
for thousands of pairs at once and is tested against this file on seeded inputs
(tests/test_alignment.py, tests/test_kernels.py). No paper section or equation numbers are
cited here: docs/method.md says why.

    score = scan_pair(v, w, "i2t", lam=9.0)                      # (R, D), (W, D) -> () one pair
    sims = literal_scan(images, captions, mask, "i2t", 9.0)      # (N_img, N_cap) float64, a double loop
    sims = literal_hierarchical(image_levels, caption_levels, mask, (1.0, 1.0, 1.0))  # the sum over levels

Slow on purpose (two Python loops over pairs): use it on a few dozen pairs, never on a split.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LEAKY_SLOPE = 0.1  # the negative slope of the LeakyReLU on the raw scores
EPS = 1e-8  # keeps the divisions finite when a column of scores is all zero


def scan_pair(v: Tensor, w: Tensor, direction: str = "i2t", lam: float = 9.0) -> Tensor:
    """SCAN score of ONE pair: regions v (R, D) and real words w (W, D), no padding -> () float64."""
    v, w = v.double(), w.double()  # the reference computes in float64
    # i2t (HAT's default): the regions are the queries, the words the context; t2i: the reverse
    query, context = (v, w) if direction == "i2t" else (w, v)  # (Q, D) queries q_q, (K, D) context k_k
    # raw scores: s_qk = q_q . k_k
    s = query @ context.T  # (Q, K)
    # a_qk = LeakyReLU_0.1(s_qk)
    a = F.leaky_relu(s, LEAKY_SLOPE)  # (Q, K)
    # for each context token k, L2 over the queries: a_qk <- a_qk / ||a_{:,k}||_2
    a = a / (a.norm(dim=0, keepdim=True) + EPS)  # (Q, K); norm (1, K)
    # attention of each query over the context: alpha_qk = exp(lambda a_qk) / sum_k' exp(lambda a_qk')
    alpha = torch.softmax(lam * a, dim=1)  # (Q, K), each row sums to 1
    # attended context: c_q = sum_k alpha_qk k_k
    c = alpha @ context  # (Q, D)
    # the pair's score: S = (1/Q) sum_q cos(q_q, c_q)
    return F.cosine_similarity(query, c, dim=1, eps=EPS).mean()  # ()


def literal_scan(images: Tensor, captions: Tensor, mask: Tensor, direction: str = "i2t",
                 lam: float = 9.0) -> Tensor:
    """``scan_pair`` of every image with every caption: (N_img, R, D) x (N_cap, W, D) -> (N_img, N_cap) float64."""
    mask = mask.bool()  # (N_cap, W) True on real words
    rows = []
    for v in images:  # v: (R, D)
        # captions[j][mask[j]]: (W_j, D), the real words only; padding never enters the formula
        rows.append(torch.stack([scan_pair(v, cap[real], direction, lam) for cap, real in zip(captions, mask)]))
    return torch.stack(rows)  # (N_img, N_cap)


def literal_hierarchical(image_levels: Sequence[Tensor], caption_levels: Sequence[Tensor], mask: Tensor,
                         weights: Sequence[float], direction: str = "i2t", lam: float = 9.0) -> Tensor:
    """HAT's score: sum over levels l of weights[l] * literal_scan at level l -> (N_img, N_cap) float64."""
    return sum(wt * literal_scan(img, cap, mask, direction, lam)
               for wt, img, cap in zip(weights, image_levels, caption_levels, strict=True))
