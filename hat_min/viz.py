"""Pictures: retrieval examples and training curves (the only module that imports matplotlib).

    fig = retrieval_figure(test_split, sims)                 # text-to-image top-k, hits framed green
    save_retrieval_examples(test_split, sims, "runs/demo/retrievals.png")
    fig = training_curves("runs/demo/metrics.jsonl")          # loss, in-batch accuracy, validation rSum
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import torch

HIT, MISS = "#2ca02c", "#d62728"


def retrieval_figure(split, sims: torch.Tensor, queries: list[int] | None = None, k: int = 5,
                     captions_per_image: int = 5):
    """Text-to-image retrieval: each row a caption and its top-k images, the true image framed green."""
    import matplotlib.pyplot as plt

    from .data import eval_captions

    captions = eval_captions(split, captions_per_image)
    queries = queries if queries is not None else _spread(len(captions), 4)
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.6 * (k + 1) + 1.6, 1.7 * len(queries)),
                             gridspec_kw={"width_ratios": [2.2] + [1] * k}, squeeze=False)
    for row, j in enumerate(queries):
        top = sims[:, j].topk(k).indices.tolist()  # images ranked for caption j
        axes[row, 0].text(0, 0.5, textwrap.fill(captions[j], 28), va="center", fontsize=8)
        axes[row, 0].axis("off")
        for col, i in enumerate(top, start=1):
            ax = axes[row, col]
            ax.imshow(split[i]["image"].convert("RGB"))
            ax.set_xticks([]), ax.set_yticks([])
            hit = i == j // captions_per_image
            for spine in ax.spines.values():
                spine.set_edgecolor(HIT if hit else MISS)
                spine.set_linewidth(3 if hit else 1)
            ax.set_title(f"#{col}", fontsize=7)
    fig.suptitle("text-to-image retrieval: top images per caption (true image framed green)", fontsize=10)
    fig.tight_layout()
    return fig


def save_retrieval_examples(split, sims: torch.Tensor, path: str | Path, **kwargs) -> Path:
    """Draw ``retrieval_figure`` and save it as a PNG (modest resolution)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = retrieval_figure(split, sims, **kwargs)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def training_curves(metrics_path: str | Path):
    """Loss and in-batch accuracy per step, and validation rSum, from a run's ``metrics.jsonl``."""
    import matplotlib.pyplot as plt

    from .runlog import read_metrics

    steps, validations = read_metrics(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    x = [r["step"] for r in steps]
    axes[0].plot(x, _smooth([r["loss"] for r in steps]))
    axes[0].set(title="training loss (smoothed)", xlabel="step", ylabel="loss (summed over the batch)")
    axes[1].plot(x, _smooth([r["accuracy"] for r in steps]))
    axes[1].set(title="in-batch accuracy (smoothed)", xlabel="step", ylabel="share ranked first")
    for prev, rec in zip(steps, steps[1:]):  # the curriculum's switch of objective
        if rec.get("objective") != prev.get("objective"):
            for ax in axes[:2]:
                ax.axvline(rec["step"], color="grey", linestyle="--", linewidth=1)
            axes[0].annotate(f"{prev.get('objective')} -> {rec.get('objective')}", (rec["step"], 0.9),
                             xycoords=("data", "axes fraction"), xytext=(4, 0), textcoords="offset points", fontsize=8)
    axes[2].plot([v["step"] for v in validations], [v["rsum"] for v in validations], marker="o")
    axes[2].set(title="validation rSum", xlabel="step", ylabel="rSum (max 600)")
    fig.tight_layout()
    return fig


def _smooth(values: list[float], weight: float = 0.9) -> list[float]:
    out, running = [], None
    for v in values:
        running = v if running is None else weight * running + (1 - weight) * v
        out.append(running)
    return out


def _spread(n: int, count: int) -> list[int]:
    """``count`` indices spread evenly over range(n)."""
    return [round(i * (n - 1) / max(1, count - 1)) for i in range(min(count, n))]
