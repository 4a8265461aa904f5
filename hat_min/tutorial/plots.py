"""Figures of the tutorial notebooks: dataset pages, token grids, score and attention matrices.

``viz.py`` draws what a trained model retrieves and how training went; this module draws the
pictures that explain the data and the model (notebooks 01 and 02). Every function returns a
matplotlib Figure; showing or saving it is the caller's business.

    notebook_style()                                         # dpi 80, legible fonts
    fig = image_captions(split, rows=[0, 1, 2])              # each image beside its captions
    fig = heatmaps([sims_i2t, sims_t2i], ["i2t", "t2i"])     # matrices side by side
    fig = ablation_bars(runs)                                # notebook 04: variants x seeds, mean and sd
"""
from __future__ import annotations

import contextlib
import json
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from data_prep import to_rgb

from ..evaluation.tables import metric_label

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


@contextlib.contextmanager
def _fixed_numpy_seed(seed: int):
    """Seed numpy's global generator inside the block and give its earlier state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def ablation_bars(runs, metrics: Sequence[str] = ("i2t_r1", "t2i_r1"), title: str = "", ylabel: str = "Recall (%)",
                  chance: Mapping[str, float] | None = None, reference_mark: str = "(HAT)"):
    """Ablation results (``hat_min.tutorial.ablation.run_ablation``): one panel per question, a bar per variant
    and metric at the mean over seeds, error bars of one standard deviation, each seed a dot.

    ``chance``: {metric: value} drawn as dotted lines; variants whose name ends with
    ``reference_mark`` get bold labels.
    """
    long = _ablation_long(runs, metrics)
    questions = list(dict.fromkeys(long["question"]))
    widths = [long.loc[long["question"] == q, "variant"].nunique() for q in questions]
    fig, axes = plt.subplots(1, len(questions), figsize=(1.3 * sum(widths) + 1.5, 3.9), sharey=True, squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, question in zip(axes[0], questions):
        part = long[long["question"] == question]
        sns.barplot(data=part, x="variant", y="value", hue="metric", errorbar="sd", capsize=0.15,
                    err_kws={"linewidth": 1.2}, ax=ax, alpha=0.85)
        with _fixed_numpy_seed(0):  # seaborn jitters the dots with numpy's global generator: same data, same picture
            sns.stripplot(data=part, x="variant", y="value", hue="metric", dodge=True, size=3.5,
                          palette="dark:black", legend=False, ax=ax)
        ax.set(title=question, xlabel="", ylabel=ylabel if ax is axes[0][0] else "")
        plt.setp(ax.get_xticklabels(), rotation=25, ha="right", rotation_mode="anchor")
        for label in ax.get_xticklabels():
            label.set_fontweight("bold" if label.get_text().endswith(reference_mark) else "normal")
        for k, metric in enumerate(metrics):
            if chance is not None and metric in chance:
                ax.axhline(chance[metric], color=sns.color_palette()[k], linestyle=":", linewidth=1.5)
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    if len(metrics) > 1:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False, title="")
    elif axes[0][-1].get_legend() is not None:
        axes[0][-1].get_legend().remove()  # one metric: the y label names it
    n_seeds = runs["seed"].nunique()
    note = ", dotted = chance" if chance is not None else ""
    fig.suptitle(title or f"ablations: mean over {n_seeds} seeds, bars = 1 sd, dots = single seeds{note}", fontsize=11)
    fig.tight_layout()
    return fig


def ablation_sweep(runs, question: str = "lambda", x: str = "lambda", metrics: Sequence[str] = ("i2t_r1", "t2i_r1"),
                   mark: float | None = None, mark_label: str = "HAT", log_x: bool = True, ylabel: str = "Recall (%)"):
    """One question of an ablation as curves over a numeric setting ``x`` (mean and 1 sd band over
    seeds, each seed a dot); ``mark`` draws a dashed line at the paper's value."""
    long = _ablation_long(runs[runs["question"] == question], metrics)
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    sns.lineplot(data=long, x=x, y="value", hue="metric", errorbar="sd", marker="o", ax=ax)
    sns.scatterplot(data=long, x=x, y="value", hue="metric", s=14, alpha=0.6, legend=False, ax=ax)
    if mark is not None:
        ax.axvline(mark, color="grey", linestyle="--", linewidth=1)
        ax.annotate(mark_label, (mark, 0), xycoords=("data", "axes fraction"), xytext=(3, 4),
                    textcoords="offset points", fontsize=9, color="grey")
    if log_x:
        ax.set_xscale("log")
        values = sorted(long[x].unique())
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, title="")
    ax.set(title=f"{question} sweep: mean and 1 sd over {runs['seed'].nunique()} seeds", xlabel=x, ylabel=ylabel)
    fig.tight_layout()
    return fig


def _ablation_long(runs, metrics: Sequence[str]):
    """The runs table in long form: one row per run and metric, metric names as in the paper's tables."""
    missing = [c for c in ("question", "variant", "seed", *metrics) if c not in runs.columns]
    if missing or runs.empty:
        raise ValueError(f"expected a non-empty run_ablation table with columns question, variant, seed and "
                         f"{', '.join(metrics)}; missing: {', '.join(missing) or 'none (it is empty)'}")
    keep = [c for c in runs.columns if c not in metrics]
    long = runs.melt(id_vars=keep, value_vars=list(metrics), var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(metric_label)
    return long
