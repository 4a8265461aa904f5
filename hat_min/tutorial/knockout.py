"""Notebook 04's level knock-out: one trained model, every subset of its levels, as ablation rows.

``hat_min.evaluation.knockout`` scores each level of a trained model alone on the pairs inside the
test families; here every non-empty subset of levels becomes one row in ``run_ablation``'s columns
(question "knock-out", seed 0), so that ``summarize``, ``contrasts`` (each subset against all levels,
with the test set's standard error from a bootstrap over families) and ``plots.ablation_bars`` read it
as they read the trained grid. With one model there is no spread over seeds: ``contrasts`` reports the
test set's error alone.

    table = knockout(model, splits["test_frames"])           # 7 rows for a 3-level model
    contrasts(table, metric="family_binding")                # "level 3" ... against "levels 1+2+3 (HAT)"
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import nn

from ..evaluation.compositional import family_labels
from ..evaluation.knockout import family_level_scores, level_subsets
from ..evaluation.protocols import encode, level_similarity
from ..metrics import recall_at_k
from .ablation import HAT_MARK, METRICS, FamilyCounts, family_columns

KNOCKOUT = "knock-out"  # the question name of knock-out rows


def knockout(model: nn.Module, split, progress: bool = False, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Every non-empty subset of ``model``'s levels scored on ``split``, no training: one row per subset.

    Columns: question ("knock-out"), variant (``subset_name``), seed (0), models, levels, direction, lambda,
    then on a split with families (the generated scenes) the within-family metrics ``FAMILY_METRICS`` with
    their means ``SUMMARY_METRICS`` and Winoground's scores (percent; no Recall@K: it needs the whole
    gallery), ``attrs["family_counts"]`` as ``run_ablation``'s; on a split without (Flickr30K) Recall@K
    and rSum over the whole gallery, each level's similarity matrix computed once. ``cache_dir``: as
    ``family_level_scores``' (notebook 03 fills it for the generalisation splits, notebook 04 reads it).
    """
    if family_labels(split) is None:
        return _recall_rows(model, split, progress)
    scores = family_level_scores(model, split, progress=progress, cache_dir=cache_dir)
    cfg, labels, cpi = model.config, scores.labels, scores.captions_per_image
    rows, counts = [], {}
    for subset in level_subsets(len(cfg.levels)):
        name = subset_name(subset, len(cfg.levels))
        sims = scores.sims(subset)  # (N_img, N_cap), -inf outside families
        family, counts[KNOCKOUT, name, 0] = family_columns(sims, labels, cpi, winoground=True)  # as run_ablation's
        rows.append({"question": KNOCKOUT, "variant": name, "seed": 0, "models": 1, "levels": len(subset),
                     "direction": cfg.direction, "lambda": cfg.lambda_softmax, **family})
    table = pd.DataFrame(rows)
    table.attrs.update(trained=0, cached=0, family_counts=FamilyCounts(counts))
    return table


def _recall_rows(model: nn.Module, split, progress: bool) -> pd.DataFrame:
    """``knockout`` on a split without families: Recall@K of every subset, from one similarity matrix per level."""
    cfg = model.config
    encoded = encode(model, split, progress=progress)
    per_level = [level_similarity(cfg, encoded, level, progress=progress) for level in range(len(cfg.levels))]  # L x (N_img, N_cap)
    rows = []
    for subset in level_subsets(len(cfg.levels)):
        sims = sum(cfg.weights[level] * per_level[level] for level in subset)  # (N_img, N_cap)
        rows.append({"question": KNOCKOUT, "variant": subset_name(subset, len(cfg.levels)), "seed": 0, "models": 1,
                     "levels": len(subset), "direction": cfg.direction, "lambda": cfg.lambda_softmax,
                     **{m: v for m, v in recall_at_k(sims).items() if m in METRICS}})
    table = pd.DataFrame(rows)
    table.attrs.update(trained=0, cached=0)
    return table


def subset_name(subset: tuple[int, ...], n_levels: int) -> str:
    """A subset of level indices as a variant name, levels counted from 1 (the shallowest): "level 3",
    "levels 2+3", and all of them marked as HAT's own setting: "levels 1+2+3 (HAT)"."""
    levels = "+".join(str(level + 1) for level in subset)
    if len(subset) == n_levels:
        return f"levels {levels} {HAT_MARK}"
    return f"level {levels}" if len(subset) == 1 else f"levels {levels}"
