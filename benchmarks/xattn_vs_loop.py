"""Benchmark: hat_min's blocked cross-attention against the released code's per-caption loop.

The authors' release scores a gallery one caption at a time: for each caption it repeats the
caption for every image, builds the attended context explicitly and takes the cosine. This
script times that shape of computation against ``hat_min.scan_score`` (implementation "auto") on the
same seeded features, checks both agree, and prints the speed-up for both directions.

    python benchmarks/xattn_vs_loop.py                       # 64 images x 320 captions, R=49, W=16, D=256
    python benchmarks/xattn_vs_loop.py --min-words 16        # no padding at all
    python benchmarks/xattn_vs_loop.py --images 128 --captions 640 --repeats 5
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hat_min.scan import EPS, LEAKY_SLOPE, scan_score


def per_caption_loop(images, captions, lengths, direction: str, lam: float) -> torch.Tensor:
    """The release's computation: one caption at a time against all images -> (N_img, N_cap).

    Written the way the release (a SCAN descendant) does it: the caption is repeated for every
    image, attention maps are transposed into contiguous copies, the attended context is built
    with a batched matmul, and the L2 norms and cosine are spelled out.
    """
    n_img = images.shape[0]
    columns = []
    for j in range(captions.shape[0]):
        cap = captions[j, : lengths[j]].unsqueeze(0).repeat(n_img, 1, 1)  # (N_img, W_j, D)
        query, context = (images, cap) if direction == "i2t" else (cap, images)
        attended = _attend(query, context, lam)  # (N_img, Q, D)
        w12 = (query * attended).sum(2)
        cos = w12 / (query.norm(2, dim=2) * attended.norm(2, dim=2)).clamp(min=EPS)  # (N_img, Q)
        columns.append(cos.mean(dim=1, keepdim=True))
    return torch.cat(columns, dim=1)


def _attend(query, context, lam):
    """Attended context of every query token: (N, Q, D), (N, K, D) -> (N, Q, D)."""
    n, len_q, _ = query.shape
    attn = torch.bmm(context, query.transpose(1, 2))  # (N, K, Q)
    attn = F.leaky_relu(attn, LEAKY_SLOPE)
    attn = attn / (attn.pow(2).sum(dim=2, keepdim=True).sqrt() + EPS)  # L2 over the queries
    attn = attn.transpose(1, 2).contiguous().view(n * len_q, -1)
    attn = torch.softmax(attn * lam, dim=1).view(n, len_q, -1)  # (N, Q, K)
    attn_t = attn.transpose(1, 2).contiguous()
    weighted = torch.bmm(context.transpose(1, 2), attn_t)  # (N, D, Q)
    return weighted.transpose(1, 2)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--captions", type=int, default=320)
    p.add_argument("--regions", type=int, default=49)
    p.add_argument("--words", type=int, default=16)
    p.add_argument("--min-words", type=int, default=None, help="shortest caption (default: words // 2)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--lambda-softmax", type=float, default=9.0)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, args.regions, args.dim, generator=g)
    captions = torch.randn(args.captions, args.words, args.dim, generator=g)
    shortest = args.words // 2 if args.min_words is None else args.min_words
    lengths = torch.randint(shortest, args.words + 1, (args.captions,), generator=g)
    mask = torch.arange(args.words)[None] < lengths[:, None]
    print(f"{args.images} images x {args.captions} captions, R={args.regions}, W={args.words}, "
          f"{shortest}-{args.words} real words, D={args.dim}, float32, {torch.get_num_threads()} threads")
    print(f"{'direction':>9} {'loop s':>8} {'hat_min s':>10} {'speed-up':>9} {'max |diff|':>11}")
    with torch.inference_mode():
        for direction in ("i2t", "t2i"):
            ref = per_caption_loop(images, captions, lengths, direction, args.lambda_softmax)
            ours = scan_score(images, captions, mask, direction, args.lambda_softmax, "auto", args.chunk_size)
            diff = (ref - ours).abs().max().item()
            t_loop = _time(lambda: per_caption_loop(images, captions, lengths, direction, args.lambda_softmax),
                           args.repeats)
            t_ours = _time(lambda: scan_score(images, captions, mask, direction, args.lambda_softmax, "auto",
                                             args.chunk_size), args.repeats)
            print(f"{direction:>9} {t_loop:8.3f} {t_ours:10.3f} {t_loop / t_ours:8.1f}x {diff:11.2e}")


if __name__ == "__main__":
    main()
