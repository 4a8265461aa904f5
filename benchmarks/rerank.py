"""Benchmark: two-stage retrieval, Recall@1 and scoring time against the number of candidates K.

Encodes a split once with a trained checkpoint, scores it in full (every pair with HAT's
cross-attention), then with ``hat_min.evaluation.retrieval`` for each K: global-embedding top-K per query,
reranked by cross-attention. Prints a table and saves a figure (R@1 and seconds against K).

    python benchmarks/rerank.py                                   # runs/demo/best on data/synthetic's test split
    python benchmarks/rerank.py --checkpoint runs/x/best --ks 8 32 128 --png /tmp/rerank.png
    python benchmarks/rerank.py --images 200                      # the first 200 test images: a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from hat_min.evaluation.data import load_splits
from hat_min.evaluation.protocols import encode
from hat_min.model import HAT
from hat_min.evaluation.retrieval import rerank_curve


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = ["| K | pairs scored | fewer than full | i2t R@1 | t2i R@1 | rSum | seconds |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        k = "full" if row["k"] is None else str(row["k"])
        lines.append(f"| {k} | {row['xattn_pairs']:,} | {1 / row['pair_share']:.1f}x | {row['i2t_r1']:.1f} | "
                     f"{row['t2i_r1']:.1f} | {row['rsum']:.1f} | {row['seconds']:.2f} |")
    return "\n".join(lines)


def figure(rows: list[dict], title: str, path: Path) -> None:
    """R@1 (both directions) and seconds against K, full scoring as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full, curve = rows[0], rows[1:]
    ks = [row["k"] for row in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=80)
    for key, colour, name in (("i2t_r1", "tab:blue", "image-to-text"), ("t2i_r1", "tab:orange", "text-to-image")):
        left.plot(ks, [row[key] for row in curve], "o-", color=colour, label=f"{name}, reranked")
        left.axhline(full[key], color=colour, linestyle="--", label=f"{name}, full scoring")
    left.set(xscale="log", xlabel="candidates per query K", ylabel="Recall@1 (%)", title="Recall@1 against K")
    left.legend(fontsize=8)
    right.plot(ks, [row["seconds"] for row in curve], "o-", color="tab:green", label="two stages")
    right.axhline(full["seconds"], color="tab:green", linestyle="--", label="full scoring")
    right.set(xscale="log", xlabel="candidates per query K", ylabel="seconds (encoding excluded)",
              title="Scoring time against K")
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    for axes in (left, right):
        axes.set_xticks(ks, [str(k) for k in ks])
        axes.minorticks_off()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/demo/best")
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--split", default="test")
    p.add_argument("--images", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--device", default=None)
    p.add_argument("--png", default="benchmarks/rerank.png")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()
    model = HAT.from_pretrained(args.checkpoint)
    split = load_splits(args.data)[args.split]
    if args.images:
        split = split.select(range(min(args.images, len(split))))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    encoded = encode(model, split, device=args.device, progress=False)
    n_img, n_cap = encoded.image_levels[0].shape[0], encoded.mask.shape[0]
    print(f"{args.checkpoint} on {args.data} {args.split}: {n_img:,} images x {n_cap:,} captions, encoded in "
          f"{time.perf_counter() - start:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load:.2f}")
    rows = rerank_curve(model, split, args.ks, device=args.device, progress=False, encoded=encoded)
    print(table(rows))
    figure(rows, f"Two-stage retrieval, {Path(args.checkpoint).parent.name} on {n_img:,} images x {n_cap:,} "
                 f"captions", Path(args.png))
    print(f"figure: {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
