"""Figures of the tutorial notebooks: dataset pages, token grids, score and attention matrices.

``viz.py`` draws what a trained model retrieves and how training went; this module draws the
pictures that explain the data and the model (notebooks 01 and 02). Every function returns a
matplotlib Figure; showing or saving it is the caller's business.

    notebook_style()                                         # dpi 80, legible fonts
    fig = image_captions(split, rows=[0, 1, 2])              # each image beside its captions
    fig = heatmaps([sims_i2t, sims_t2i], ["i2t", "t2i"])     # matrices side by side
    fig = heatmaps([*levels, total], titles, scale_groups=[0, 0, 0, 1])  # the levels on one colour scale
    outline_boxes(fig, boxes, size=64)                       # a scene's object boxes on every picture
    table = anchor_table(splits, lengths["words"], vocab)    # notebook 01: generated data beside Flickr30K
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
MARK_INSET = 0.08  # a heat map's outline sits this far (in cells) inside its cell: neighbours' frames stay apart
BOX_COLOURS = {"subject": "deepskyblue", "object": "limegreen"}  # outline_boxes: a colour per group of a scene


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
             panel_size: tuple[float, float] = (3.6, 3.2), scale_groups: Sequence | None = None):
    """Matrices side by side as heat maps; ``marks`` outlines cells per panel as (row, col, colour).

    ``center``: the value at the middle of a diverging ``cmap`` (0 for gradients), else None.
    ``scale_groups``: None, every panel its own colour scale and bar; else one label per panel, and the
    panels with the same label share one colour scale and one colour bar (``[0, 0, 0, 1]``: three
    levels on one scale, their sum on another), so that equal colours mean equal values among them.
    Outlines sit inside their cell, so that the frames of neighbouring cells never share an edge.
    """
    n = len(matrices)
    groups = list(range(n)) if scale_groups is None else list(scale_groups)
    if len(groups) != n:
        raise ValueError(f"scale_groups has {len(groups)} labels for {n} matrices: one per matrix")
    arrays = [m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=float)
              for m in matrices]
    limits = {g: _colour_limits([a for a, h in zip(arrays, groups) if h == g], center) for g in groups}
    fig, axes = plt.subplots(1, n, figsize=(panel_size[0] * n, panel_size[1]), squeeze=False, layout="constrained")
    for k, (ax, m) in enumerate(zip(axes[0], arrays)):
        small = max(m.shape) <= 8
        last_of_group = groups[k] not in groups[k + 1:]  # one colour bar per group, beside its last panel
        vmin, vmax = limits[groups[k]]
        sns.heatmap(m, ax=ax, cmap=cmap, center=center, vmin=vmin, vmax=vmax, square=small,
                    annot=small if annotate is None else annotate, fmt=".2f", annot_kws={"fontsize": 8},
                    cbar=last_of_group, cbar_kws={"shrink": 0.8},
                    xticklabels=_ticks(xticklabels, m.shape[1]), yticklabels=_ticks(yticklabels, m.shape[0]))
        ax.tick_params(labelsize=8)
        ax.tick_params(axis="y", labelrotation=0)
        if xticklabels is not None and m.shape[1] <= MAX_TICK_LABELS:
            plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
        elif m.shape[1] > 10:  # numbered columns: upright numbers would run into each other in a narrow panel
            plt.setp(ax.get_xticklabels(), rotation=90)
        seen: Counter = Counter()  # a cell marked twice gets its second frame inside the first
        for row, col, colour in (marks[k] if marks else ()):
            inset = MARK_INSET + 0.12 * seen[row, col]
            seen[row, col] += 1
            ax.add_patch(plt.Rectangle((col + inset, row + inset), 1 - 2 * inset, 1 - 2 * inset, fill=False,
                                       edgecolor=colour, linewidth=2.5))
        ax.set(title=titles[k], xlabel=xlabel, ylabel=ylabel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig


def outline_boxes(fig, boxes: Mapping[str, Sequence[Sequence[float]]], size: int,
                  colours: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None):
    """Outline ``boxes`` ({group: [[x0, y0, x1, y1], ...]}, pixels of a ``size`` x ``size`` image) on every
    picture of ``fig`` (each axes holding an image, e.g. ``viz.attention_figure``'s panels), with a legend."""
    from matplotlib.patches import Patch

    colours = dict(BOX_COLOURS, **(colours or {}))
    pictures = [ax for ax in fig.axes if ax.images]
    for ax in pictures:
        left, right, bottom, top = ax.images[0].get_extent()  # the first image spans the whole picture
        sx, sy = (right - left) / size, (bottom - top) / size  # data units per pixel (y grows downwards)
        for group, group_boxes in boxes.items():
            for x0, y0, x1, y1 in group_boxes:
                ax.add_patch(plt.Rectangle((left + x0 * sx, top + y0 * sy), (x1 - x0) * sx, (y1 - y0) * sy,
                                           fill=False, edgecolor=colours[group], linewidth=1.2))
    handles = [Patch(facecolor="none", edgecolor=colours[g], label=(labels or {}).get(g, g)) for g in boxes]
    constrained = type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"  # room outside the panels
    fig.legend(handles=handles, loc="outside lower center" if constrained else "lower center", ncol=len(handles),
               fontsize=8, frameon=False)
    return fig


# Flickr30K as published (not measured here): Young et al. 2014 (TACL, "From image descriptions to visual
# denotations") for the images and captions, Karpathy & Fei-Fei 2015 for the split (docs/method.md, section 7).
FLICKR30K = {"images": 31_783, "captions": 158_915, "captions per image": 5,
             "split (train / val / test)": "29,000 / 1,014 / 1,000",
             # mean caption length: about 12.3 words (as quoted for Flickr30K, Young et al. 2014 / Plummer et al. 2015)
             "mean caption length (words)": 12.3}


def anchor_table(splits: Mapping[str, int], words_per_caption: Sequence[int], vocabulary: Counter,
                 captions_per_image: float, name: str = "this notebook's data (measured)"):
    """The data a notebook measured beside Flickr30K's published statistics (``FLICKR30K``), one row per quantity.

    ``splits``: images per split (train, val, test); ``words_per_caption`` and ``vocabulary`` (word counts) of
    the captions measured. Flickr30K's vocabulary is left empty: no published figure is quoted here.
    """
    import pandas as pd

    n_images = sum(splits.values())
    ours = {"images": n_images, "captions": round(n_images * captions_per_image),
            "captions per image": round(captions_per_image, 2),
            "split (train / val / test)": " / ".join(f"{splits.get(k, 0):,}" for k in ("train", "val", "test")),
            "mean caption length (words)": round(float(np.mean(words_per_caption)), 1),
            "distinct words (vocabulary)": len(vocabulary)}
    published = {**FLICKR30K, "distinct words (vocabulary)": "not quoted"}
    return pd.DataFrame({name: {k: _shown(v) for k, v in ours.items()},
                         "Flickr30K (published)": {k: _shown(v) for k, v in published.items()}})


def _shown(value) -> str:
    """A table entry as text: integers with thousands separators, floats without trailing zeros."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


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


def _colour_limits(arrays: Sequence[np.ndarray], center: float | None) -> tuple[float, float]:
    """(vmin, vmax) over all ``arrays``; symmetric about ``center`` when one is given."""
    low = min(float(np.nanmin(a)) for a in arrays)
    high = max(float(np.nanmax(a)) for a in arrays)
    if center is None:
        return low, high
    half = max(high - center, center - low) or 1.0
    return center - half, center + half


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
    and metric at the mean over seeds, error bars of one standard deviation, each seed a dot. The y axis is
    zoomed onto the values (it starts at 0 only when they come near it), so that the differences show.

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
    bottom, top = _zoomed_limits(long["value"].to_numpy(dtype=float))
    axes[0][0].set_ylim(bottom, top)  # shared: the axis shows the differences, not the distance from 0
    note = ", dotted = chance" if chance is not None else ""
    below = [f"{metric_label(m)} {v:g}" for m, v in (chance or {}).items() if m in metrics and v < bottom]
    note += f" (below the axis: {', '.join(below)})" if below else ""
    fig.suptitle(title or f"ablations: mean over {n_seeds} seeds, bars = 1 sd, dots = single seeds{note}", fontsize=11)
    fig.tight_layout()
    return fig


def _zoomed_limits(values: np.ndarray, pad_share: float = 0.25) -> tuple[float, float]:
    """y limits around ``values`` with a margin of ``pad_share`` of their span (at least 1), from 0 when that is near."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(1.0, pad_share * (high - low))
    bottom = low - pad if low - pad > 0.5 * (high - low) else 0.0  # near 0: keep the whole bar
    return bottom, high + pad


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


def contrast_figure(checks, by: str | None = None, title: str = "", xlabel: str = ""):
    """``ablation.contrasts``' paired differences: each variant minus its reference, with +-2 standard errors.

    One panel per value of the column ``by`` (e.g. a split), one row per variant; a bar that crosses the
    dotted zero line is "within noise" (the verdict's rule: |difference| <= 2 se_total). Filled dots are
    the verdicts beyond noise.
    """
    if checks.empty:
        raise ValueError("no contrasts to draw")
    groups = list(dict.fromkeys(checks[by])) if by else [None]
    variants = list(dict.fromkeys(checks["variant"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups) + 1.5, 0.45 * len(variants) + 1.4),
                             sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups):
        part = checks if group is None else checks[checks[by] == group]
        part = part.set_index("variant").reindex(variants)
        y = np.arange(len(variants))
        se = part["se_total"].fillna(part["se"]).to_numpy(dtype=float)
        diff = part["difference"].to_numpy(dtype=float)
        beyond = part["verdict"].isin(["higher", "lower"]).to_numpy()
        ax.errorbar(diff, y, xerr=2 * se, fmt="none", ecolor="0.35", capsize=3)
        ax.scatter(diff[beyond], y[beyond], color="C3", zorder=3, label="beyond 2 se")
        ax.scatter(diff[~beyond], y[~beyond], facecolor="white", edgecolor="C0", zorder=3, label="within noise")
        ax.axvline(0, color="0.2", linestyle=":", linewidth=1)
        ax.set_yticks(y, variants)
        ax.set_ylim(len(variants) - 0.5, -0.5)  # first variant on top; invert_yaxis toggles shared axes
        ax.set_title(str(group) if group is not None else "")
        ax.set_xlabel(xlabel or f"difference in {metric_label(part['metric'].dropna().iloc[0])} (points)")
    # beside the last panel, not on it: inside, it can hide a point (it hid "levels 2+3" on test_words)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title or f"each variant minus {checks['reference'].iloc[0]}: difference +- 2 se", y=1.0)
    fig.tight_layout()
    return fig
