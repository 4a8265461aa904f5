"""Figures of the tutorial notebooks: dataset pages, token grids, score and attention matrices.

``viz.py`` draws what a trained model retrieves and how training went; this module draws the
pictures that explain the data and the model (notebooks 01 and 02). Every function returns a
matplotlib Figure; showing or saving it is the caller's business.

    notebook_style()                                         # dpi 80, legible fonts
    fig = image_captions(split, rows=[0, 1, 2])              # each image beside its captions
    fig = heatmaps([sims_i2t, sims_t2i], ["i2t", "t2i"])     # matrices side by side
"""
from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from data_prep import to_rgb

MAX_TICK_LABELS = 40  # above this many rows / columns a heat map drops its tick labels


def notebook_style(dpi: int = 80) -> None:
    """Modest resolution and fonts that stay legible at that resolution."""
    sns.set_theme(style="white", context="notebook", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "axes.titlesize": 11, "axes.titleweight": "bold"})


def image_captions(split, rows: Sequence[int], wrap: int = 100):
    """Each image of ``rows`` beside its captions (long ones wrapped), one image per line."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 1.75 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 6.5]})
    for (ax_img, ax_txt), row in zip(axes, rows):
        item = split[int(row)]
        ax_img.imshow(to_rgb(item["image"]))
        ax_img.set_axis_off()
        ax_img.set_title(item["filename"], fontsize=8, fontweight="normal")
        lines = [textwrap.fill(f"{k + 1}. {c}", wrap, subsequent_indent="    ") for k, c in enumerate(item["captions"])]
        ax_txt.text(0, 0.5, "\n".join(lines), va="center", fontsize=9.5)
        ax_txt.set_axis_off()
    fig.suptitle("images and their captions (caption j of a split belongs to image j // 5)", fontsize=11)
    fig.tight_layout()
    return fig


def family_strip(split, rows: Sequence[int], wrap: int = 26):
    """The members of one hard-negative family: image, variant and first caption of each."""
    fig, axes = plt.subplots(1, len(rows), figsize=(2.5 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        item = split[int(row)]
        scene = json.loads(item["scene"])
        ax.imshow(to_rgb(item["image"]))
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(scene["variant"], fontsize=11)
        ax.set_xlabel(textwrap.fill(item["captions"][0], wrap), fontsize=8.5)
    fig.suptitle(f"one family of hard negatives (family {split[int(rows[0])]['family']}): "
                 "the same words, different scenes", fontsize=11)
    fig.tight_layout()
    return fig


def length_histograms(lengths: Mapping[str, Sequence[int]], limit: int | None = None, title: str = ""):
    """Overlaid histograms of caption lengths (one per unit, e.g. words and WordPiece tokens)."""
    fig, ax = plt.subplots(figsize=(8, 3.3))
    data = {"length": [n for values in lengths.values() for n in values],
            "unit": [name for name, values in lengths.items() for _ in values]}
    sns.histplot(data, x="length", hue="unit", discrete=True, element="step", stat="count", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    if limit is not None:
        ax.axvline(limit + 0.5, color="black", linestyle="--", linewidth=1)
        ax.annotate(f"max_text_len = {limit}", (limit + 0.5, 0.95), xycoords=("data", "axes fraction"),
                    xytext=(-4, 0), textcoords="offset points", ha="right", fontsize=9)
    ax.set(title=title or "caption lengths", xlabel="length of a caption", ylabel="captions")
    fig.tight_layout()
    return fig


def top_words(counts: Counter, top: int = 25, title: str = ""):
    """Horizontal bar chart of the ``top`` most frequent words."""
    words, freq = zip(*counts.most_common(top))
    fig, ax = plt.subplots(figsize=(6.5, 0.2 * top + 1.2))
    sns.barplot(x=list(freq), y=list(words), color=sns.color_palette()[0], ax=ax)
    ax.set(title=title or f"the {top} most frequent words", xlabel="occurrences", ylabel="")
    ax.tick_params(axis="y", labelsize=9)
    fig.tight_layout()
    return fig


def patch_grids(image, grids: Mapping[str, int]):
    """The image once per entry of ``grids`` ({label: tokens per side}), with that token grid drawn over it."""
    pixels = np.asarray(to_rgb(image))
    side = pixels.shape[0]
    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 3.0), squeeze=False)
    for ax, (label, n) in zip(axes[0], grids.items()):
        ax.imshow(pixels, extent=(0, side, side, 0))
        for k in range(1, n):
            ax.axhline(k * side / n, color="white", linewidth=0.8)
            ax.axvline(k * side / n, color="white", linewidth=0.8)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(f"{n} x {n} = {n * n} tokens, {side / n:g} px each", fontsize=9)
    fig.suptitle("what one token of each Swin stage covers", fontsize=11)
    fig.tight_layout()
    return fig


def heatmaps(matrices: Sequence, titles: Sequence[str], xlabel: str = "", ylabel: str = "",
             xticklabels: Sequence[str] | None = None, yticklabels: Sequence[str] | None = None,
             marks: Sequence[Sequence[tuple[int, int, str]]] | None = None, annotate: bool | None = None,
             cmap: str = "viridis", center: float | None = None, suptitle: str = "",
             panel_size: tuple[float, float] = (3.6, 3.2)):
    """Matrices side by side as heat maps; ``marks`` outlines cells per panel as (row, col, colour).

    ``center``: the value at the middle of a diverging ``cmap`` (0 for gradients), else None.
    """
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(panel_size[0] * n, panel_size[1]), squeeze=False, layout="constrained")
    for k, (ax, m) in enumerate(zip(axes[0], matrices)):
        m = m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        small = max(m.shape) <= 8
        sns.heatmap(m, ax=ax, cmap=cmap, center=center, square=small, annot=small if annotate is None else annotate,
                    fmt=".2f", annot_kws={"fontsize": 8}, cbar_kws={"shrink": 0.8},
                    xticklabels=_ticks(xticklabels, m.shape[1]), yticklabels=_ticks(yticklabels, m.shape[0]))
        ax.tick_params(labelsize=8)
        ax.tick_params(axis="y", labelrotation=0)
        if xticklabels is not None and m.shape[1] <= MAX_TICK_LABELS:
            plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
        seen: Counter = Counter()  # a cell marked twice gets its second frame inside the first
        for row, col, colour in (marks[k] if marks else ()):
            inset = 0.1 * seen[row, col]
            seen[row, col] += 1
            ax.add_patch(plt.Rectangle((col + inset, row + inset), 1 - 2 * inset, 1 - 2 * inset, fill=False,
                                       edgecolor=colour, linewidth=2.5))
        ax.set(title=titles[k], xlabel=xlabel, ylabel=ylabel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig


def lambda_sweep(lambdas: Sequence[float], entropy: Sequence[float], scores: Sequence[float],
                 max_entropy: float | None = None):
    """Attention entropy and pair score against the softmax's lambda (log x axis)."""
    fig, (ax_h, ax_s) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_h.plot(lambdas, entropy, marker="o")
    if max_entropy is not None:
        ax_h.axhline(max_entropy, color="grey", linestyle="--", linewidth=1)
        ax_h.annotate("uniform over the words (log W)", (lambdas[-1], max_entropy), xytext=(0, 5),
                      textcoords="offset points", ha="right", fontsize=9, color="grey")
    ax_h.set(title="attention entropy per region", xlabel="lambda", ylabel="entropy (nats)", xscale="log")
    ax_h.set_ylim(0, 1.15 * max(max(entropy), max_entropy or 0))
    ax_s.plot(lambdas, scores, marker="o", color=sns.color_palette()[1])
    ax_s.set(title="score of the pair S(I, T)", xlabel="lambda", ylabel="mean cosine", xscale="log")
    fig.tight_layout()
    return fig


def _ticks(labels: Sequence[str] | None, n: int):
    """Tick labels for a heat-map axis of length ``n``: the given ones, numbers, or none when too many."""
    if n > MAX_TICK_LABELS:
        return False
    return list(labels) if labels is not None else True
