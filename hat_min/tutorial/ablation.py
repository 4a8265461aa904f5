"""Ablations of the hierarchical alignment: which levels, which direction, which lambda, over seeds.

Paper: Bin et al. 2023, ablation study (see docs/method.md, sections 3-4). HAT scores a pair at three levels
(shallow Swin stage with shallow BERT layer, ..., deep with deep) by stacked cross-attention in
direction i2t with lambda 9, and sums the levels. An ablation trains the same recipe with one
of these choices changed, several times (seeds), and compares Recall@K on the test split.

    grid = ablation_grid(ABLATION_MODEL)                  # {question: {variant: config(s)}}
    runs = run_ablation(grid, ABLATION_TRAIN, "data/notebook_ablation", seeds=(0, 1, 2))
    table = summarize(runs)                                # mean and sd over seeds per variant
    contrasts(runs)                                        # each variant against HAT's own setting

A variant is one HATConfig, or a tuple of them: an ensemble, whose similarity matrix is the sum of
its models' (the paper's "i2t + t2i" row). Every (config, seed) is trained once with
``hat_min.training.train_or_load`` (cached under ``cache_dir``) and its test similarities are cached
beside it, so a variant that appears in two questions (HAT's own setting is the reference of all
three) costs one run per seed, and running the grid again only reads files.

``ABLATION_MODEL`` and ``ABLATION_TRAIN`` are a fast recipe for CPUs (about 50 s a run on two
idle Zen 4 cores, evaluation included, measured 2026-12-02), built like the authors' release starts its training: the
``minilm`` model with both encoders pretrained (the Swin offline on generated scenes, MiniLM on text
as its package ships it) and **frozen**, so that only the per-level LayerNorms, projections and region
positions learn (the release trains only its projections for its first 11 epochs), with HAT's hinge
on the hardest negative from the first step, on batches of whole families of hard negatives, for
150 steps of 32 pairs on the generated scenes (``ABLATION_DATA``). Each run is scored by Recall@K
and by within-family accuracy (``hat_min.evaluation.compositional``): the share of queries that pick
the right member of a family of four scenes with the same words, and by kind of swap; the means over
both directions are ``SUMMARY_METRICS``. With the text encoder frozen the role swaps stay at chance,
so the binding swaps (``family_binding``) are the metric that can decide.

Seeds are paired: a seed fixes the order of the training batches (and the initial projections),
the same for every variant, so ``contrasts`` compares two variants seed by seed. Two things make a
difference uncertain, and ``contrasts`` measures both: the seed (the spread of the per-seed
differences) and the test set (which families of scenes happened to be drawn: a bootstrap over the
test families, the same draws for both variants, from the per-family counts ``run_ablation`` keeps). A run whose
Recall@K stays near chance (rSum less than 5 % of the way from a random scorer's to 600) is flagged ``failed``: it is kept
in the rows and counted by ``summarize``, and left out of the pairs of ``contrasts``.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import HATConfig
from ..evaluation.compositional import KINDS, family_accuracy, family_counts, family_labels
from ..evaluation.data import load_splits
from ..evaluation.protocols import chance_recall, evaluate
from ..evaluation.tables import metric_label
from ..metrics import recall_at_k
from ..training import TrainConfig, train_or_load

Variant = Union[HATConfig, tuple[HATConfig, ...]]  # one model, or an ensemble of models
Grid = Mapping[str, Mapping[str, Variant]]  # {question: {variant name: variant}}
HAT_MARK = "(HAT)"  # ablation_grid ends the name of HAT's own setting with it, in every question

METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
# within-family accuracy (4-way) and per kind of swap (2-way), on data with families (the generated scenes)
FAMILY_METRICS = ("family_i2t", "family_t2i", *(f"family_{d}_{k}" for k in KINDS for d in ("i2t", "t2i")))
BINDING_KINDS = ("colour", "texture", "size")  # the binding swaps: an attribute exchanged between the two groups
# Means over both directions (percent), added to every row with families: within family (4-way, chance 25 %),
# role swaps and binding swaps (2-way, chance 50 %; binding: the mean of BINDING_KINDS).
SUMMARY_METRICS = {"family_mean": 25.0, "family_role": 50.0, "family_binding": 50.0}
# What each summary metric averages (summary_metrics computes them, contrasts resamples them).
SUMMARY_PARTS = {"family_mean": ("family_i2t", "family_t2i"),
                 "family_role": ("family_i2t_role", "family_t2i_role"),
                 "family_binding": tuple(f"family_{d}_{k}" for k in BINDING_KINDS for d in ("i2t", "t2i"))}
# Bootstrap draws over the test families for the test-set standard error of a contrast (seeded: the same
# numbers every time).
TEST_DRAWS = 2000
# A run "failed" when its rSum got less than this share of the way from a random scorer's to 600 (perfect).
FAILED_SHARE = 0.05
# Sizes of the generated dataset the fast recipe trains on (data_prep.synthetic.build keywords): 600 test images
# (and as many in test_unseen), so that one image moves within-family accuracy by 0.17 points.
# Captions in the generator's ten base frames only (more_frames 0, the default dataset before 2026-12-04): the
# numbers below were measured so, and this recipe leaves the roles to the binding swaps anyway.
ABLATION_DATA = dict(n_train=1000, n_val=40, n_test=600, seed=0, more_frames=0.0)
# The minilm preset as it is: its Swin pretrained offline to name what is under each patch (hat_min/weights),
# MiniLM as its package ships it; ABLATION_TRAIN keeps both frozen. A frozen text encoder that was never told
# which group a word describes leaves the role swaps at chance (what is above what is learnt only when MiniLM's
# layers train, as in the demo recipe), so the levels question is decided on the binding swaps.
ABLATION_MODEL = HATConfig.preset("minilm")
# 150 steps of 32 pairs, frozen backbones (freeze_backbone_epochs covers the whole run: 5,000 pairs are
# 156 steps), HAT's hinge on the hardest negative throughout, whole families per batch. Measured on 2 idle
# cores (2026-12-01, with the place-labelled text layers of the minilm_labelled variant, 160 test images;
# within-family accuracy, mean of i2t and t2i, seeds 0-2): at lr 5e-4 HAT's setting
# reached 90.7 % with an sd of 5.0 over seeds, and "top level alone minus all levels" had a paired standard
# error of 4.3 points; at lr 2e-3 every run came within 1.6 points of 98 % (all levels 98.9 / 98.4 / 96.4,
# top level 98.3 / 98.1 / 98.4) and that standard error fell to 0.8. Unfrozen backbones took 0.20 s a step
# against 0.13 s. Every field is spelled out (not derived from "demo", which changes with `make demo`); no
# auxiliary loss, so that only the ablated setting varies. No DataLoader workers: the images are decoded
# up front, and a worker costs more to start than it saves.
ABLATION_TRAIN = TrainConfig(
    epochs=1, max_steps=150, batch_size=32, lr=2e-3, optimizer="adamw", weight_decay=1e-4, schedule="constant",
    warmup_steps=20, cooldown_steps=50, grad_clip=2.0, negatives="hardest", freeze_backbone_epochs=1,
    freeze_text=True, batch_by_family="always", global_loss_weight=0.0, val_images=20, checkpoint_every=10_000,
    workers=0)


class FamilyCounts(dict):
    """``run_ablation``'s ``attrs["family_counts"]``: {(question, variant, seed): {metric: (F, 2) tensor}}.

    pandas compares and deep-copies a table's attrs on many operations (concat, melt, plotting); tensors
    cannot be compared with ``==``, so this dict compares by identity and is shared, not copied (treat it
    as read-only).
    """

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __deepcopy__(self, memo) -> "FamilyCounts":
        return self


def ablation_grid(base: HATConfig, lambdas: Sequence[float] = (1, 3, 9, 27)) -> dict[str, dict[str, Variant]]:
    """The three questions asked of ``base`` (HAT's own setting, named "... (HAT)" in every question):

    - levels: the top level alone, the top two, all of ``base.levels``, and the shallow levels
      without the top one ("no top");
    - direction: i2t, t2i, and their ensemble (the sum of the two models' similarities);
    - lambda: the softmax's inverse temperature, ``lambdas`` and the base's own.
    """
    if base.direction != "i2t" or len(base.levels) < 2:
        raise ValueError("the base config must be HAT's setting: direction 'i2t' and at least two levels, got "
                         f"direction {base.direction!r} with {len(base.levels)} level(s)")
    if not lambdas or min(lambdas) <= 0:
        raise ValueError(f"lambdas must be positive numbers, got {tuple(lambdas)}")
    t2i = base.replace(direction="t2i")
    n = len(base.levels)
    levels = {f"top {k}": base.replace(levels=base.levels[-k:]) for k in range(1, min(n, 3))}
    levels[f"all {n} {HAT_MARK}"] = base
    levels[f"no top ({n - 1})"] = base.replace(levels=base.levels[:-1])
    lambda_ = {}
    for lam in sorted({float(x) for x in lambdas} | {base.lambda_softmax}):
        mark = f" {HAT_MARK}" if lam == base.lambda_softmax else ""
        lambda_[f"lambda {lam:g}{mark}"] = base.replace(lambda_softmax=lam)
    return {"levels": levels, "direction": {f"i2t {HAT_MARK}": base, "t2i": t2i, "i2t + t2i": (base, t2i)},
            "lambda": lambda_}


def grid_table(variants: Grid) -> pd.DataFrame:
    """The grid as a table: question, variant, models, levels, direction and lambda of each variant."""
    _check_grid(variants, seeds=(0,))
    return pd.DataFrame([
        {"question": q, "variant": name, "models": len(_models(v)), "levels (stage, layer)": str(_models(v)[0].levels),
         "direction": " + ".join(c.direction for c in _models(v)), "lambda": _models(v)[0].lambda_softmax}
        for q, group in variants.items() for name, v in group.items()])


def distinct_configs(variants: Grid) -> list[HATConfig]:
    """The configs the grid trains, each once (a config shared by several variants counts once)."""
    _check_grid(variants, seeds=(0,))
    configs = {_key(cfg): cfg for group in variants.values() for v in group.values() for cfg in _models(v)}
    return list(configs.values())


def run_ablation(variants: Grid, train_config: TrainConfig, data_dir: str | Path, seeds: Sequence[int] = (0, 1, 2),
                 cache_dir: str | Path = "runs/cache/ablation", split: str = "test",
                 progress: bool = True) -> pd.DataFrame:
    """Train (or load) every variant once per seed and evaluate it: one row per question x variant x seed.

    Columns: question, variant, seed, models (1, or the ensemble's size), levels, direction,
    lambda, Recall@K (``METRICS``, percent) on the whole ``split`` (the "1k" protocol), then, on data
    with families, within-family accuracy (``FAMILY_METRICS`` and their means ``SUMMARY_METRICS``,
    percent), and ``failed`` (rSum less
    than ``FAILED_SHARE`` of the way from a random scorer's rSum on this gallery to 600).
    ``attrs["trained"]`` counts the runs trained (or loaded from a finished run folder) and scored now,
    ``attrs["cached"]`` those whose test similarities were read from the cache; on data with families,
    ``attrs["family_counts"]`` holds each row's hits and queries per test family
    ({(question, variant, seed): {metric: (F, 2)}}, ``family_counts``), for the test-set standard error
    of ``contrasts``.
    """
    _check_grid(variants, seeds)
    test = load_splits(data_dir)[split]
    labels = family_labels(test) if test is not None else None
    runs = {_key(cfg): cfg for cfg in distinct_configs(variants)}
    todo = [(key, seed) for seed in seeds for key in runs]
    bar = tqdm(todo, desc="ablation runs", unit="run", disable=not progress)
    sims: dict[tuple[str, int], torch.Tensor] = {}
    cached = 0
    for key, seed in bar:
        bar.set_postfix_str(_describe(runs[key]) + f", seed {seed}")
        sims[key, seed], hit = _test_sims(runs[key], train_config.replace(seed=seed), data_dir, test, Path(cache_dir))
        cached += hit
    rows, counts = [], {}
    for question, group in variants.items():
        for name, variant in group.items():
            models = _models(variant)
            for seed in seeds:
                total = sum(sims[_key(cfg), seed] for cfg in models)  # (N_img, N_cap) an ensemble adds its models
                metrics = recall_at_k(total)
                family = {}
                if labels is not None:
                    family, counts[question, name, seed] = family_columns(total, labels)
                rows.append({"question": question, "variant": name, "seed": seed, "models": len(models),
                             "levels": len(models[0].levels), "direction": "+".join(c.direction for c in models),
                             "lambda": models[0].lambda_softmax, **{m: metrics[m] for m in METRICS},
                             **family,
                             "failed": _failed(metrics["rsum"], total.shape[0])})
    table = pd.DataFrame(rows)
    table.attrs.update(trained=len(todo) - cached, cached=cached)
    if counts:
        table.attrs["family_counts"] = FamilyCounts(counts)
    return table


def family_columns(sims: torch.Tensor, labels, captions_per_image: int = 5,
                   winoground: bool = False) -> tuple[dict[str, float], dict]:
    """One run's within-family columns, ``FAMILY_METRICS`` and their means ``SUMMARY_METRICS`` (percent, from
    ``family_accuracy``), and the hits and queries per test family behind them ({metric: (F, 2)}, ``family_counts``).
    ``winoground``: also ``family_accuracy``'s Winoground scores (``winoground_*``), last."""
    family = family_accuracy(sims, labels, captions_per_image)
    counts = {m: c for m, c in family_counts(sims, labels, captions_per_image).items() if m in FAMILY_METRICS}
    columns = {**{m: family[m] for m in FAMILY_METRICS if m in family}, **summary_metrics(family)}
    if winoground:
        columns.update({m: v for m, v in family.items() if m.startswith("winoground_")})
    return columns, counts


def summary_metrics(family: Mapping[str, float]) -> dict[str, float]:
    """``SUMMARY_METRICS`` from one run's ``family_accuracy``: means over both directions (empty without families)."""
    return {name: sum(family[k] for k in parts) / len(parts) for name, parts in SUMMARY_PARTS.items()
            if all(k in family for k in parts)}


def summarize(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds per (question, variant), in the grid's order.

    Columns are (metric, "mean") and (metric, "sd") pairs, ("seeds", "n") and, when the runs have a
    ``failed`` column, ("failed", "n"): how many of those seeds failed (they are in the mean: read it).
    """
    _check_columns(runs, ["question", "variant", "seed", *metrics])
    groups = runs.groupby(["question", "variant"], sort=False)
    table = groups[list(metrics)].agg(["mean", "std"]).rename(columns={"std": "sd"}, level=1)
    table[("seeds", "n")] = groups["seed"].nunique()
    if "failed" in runs.columns:
        table[("failed", "n")] = groups["failed"].sum().astype(int)
    return table


def contrasts(runs: pd.DataFrame, references: Mapping[str, str] | None = None, metric: str = "rsum",
              draws: int = TEST_DRAWS) -> pd.DataFrame:
    """Each variant of a question against that question's reference variant, on ``metric``, seed by seed.

    ``references``: {question: variant}; default, in each question the variant whose name ends
    with ``HAT_MARK`` (HAT's own setting in ``ablation_grid``).

    Seeds are paired (the same seed trains every variant on the same batches), so the comparison
    is the per-seed difference d_s = variant_s - reference_s over the seeds both have, leaving out
    a seed where either run ``failed``. Columns: question, variant, reference, metric, mean (of the
    variant over those seeds), difference (mean of d_s), se (the seeds' standard error of that mean,
    sd(d_s) / sqrt(pairs)), se_test (the test set's: ``bootstrap_se``, a bootstrap over the test families,
    NaN for a metric without families or a table without ``attrs["family_counts"]``), se_total
    (sqrt(se^2 + se_test^2), or se alone), pairs, ratio (difference / se_total), and verdict: "higher"
    or "lower" when |difference| > 2 se_total, else "within noise". With three pairs, 2 se is a loose
    bar, not a test.
    """
    _check_columns(runs, ["question", "variant", "seed", metric])
    if references is None:
        references = {q: v for q, v in runs[["question", "variant"]].drop_duplicates().itertuples(index=False)
                      if v.endswith(HAT_MARK)}
    ok = ~runs["failed"].astype(bool) if "failed" in runs.columns else pd.Series(True, index=runs.index)
    rows = []
    for question, reference in references.items():
        group = runs[(runs["question"] == question) & ok]
        if reference not in set(runs.loc[runs["question"] == question, "variant"]):
            raise ValueError(f"no variant {reference!r} in question {question!r}; "
                             f"it has {sorted(set(runs.loc[runs['question'] == question, 'variant']))}")
        ref = group.loc[group["variant"] == reference].set_index("seed")[metric]
        for name, values in group.groupby("variant", sort=False):
            if name == reference:
                continue
            values = values.set_index("seed")[metric]
            seeds = values.index.intersection(ref.index)
            d = values[seeds] - ref[seeds]  # (pairs,) per-seed differences
            row = {"question": question, "variant": name, "reference": reference, "metric": metric}
            if len(d) == 0:
                rows.append({**row, "mean": math.nan, "difference": math.nan, "se": math.nan, "se_test": math.nan,
                             "se_total": math.nan, "pairs": 0, "ratio": math.nan, "verdict": "no pairs"})
                continue
            diff = float(d.mean())
            se = math.sqrt(_var(d) / len(d))
            se_test = bootstrap_se(runs, question, name, reference, list(seeds), metric, draws)
            se_total = math.hypot(se, se_test) if math.isfinite(se_test) else se
            if se_total > 0:
                ratio = diff / se_total
            else:  # no spread measured (one pair, or identical differences): any difference counts
                ratio = math.copysign(math.inf, diff) if diff else 0.0
            verdict = "within noise" if abs(ratio) <= 2 else ("higher" if diff > 0 else "lower")
            rows.append({**row, "mean": float(values[seeds].mean()), "difference": diff, "se": se, "se_test": se_test,
                         "se_total": se_total, "pairs": len(d), "ratio": ratio, "verdict": verdict})
    return pd.DataFrame(rows)


def bootstrap_se(runs: pd.DataFrame, question: str, variant: str, reference: str, seeds: Sequence[int], metric: str,
            draws: int = TEST_DRAWS, seed: int = 0) -> float:
    """The test set's standard error of "variant minus reference" (mean over ``seeds``), in points.

    A bootstrap over the test families: each draw resamples the F families with replacement, the same
    families for both variants and every seed (the comparison is paired on the test set too), recomputes
    ``metric`` from ``runs.attrs["family_counts"]`` (the mean of its parts, ``SUMMARY_PARTS``, each
    100 * hits / queries), and the standard deviation of the difference over the draws is the answer.
    NaN when the runs keep no family counts for this metric.
    """
    counts = runs.attrs.get("family_counts")
    parts = SUMMARY_PARTS.get(metric, (metric,))
    try:
        a, b = ([torch.stack([torch.stack([counts[question, name, s][p] for p in parts]) for s in seeds])
                 for name in (variant, reference)])  # (S, M, F, 2) each: seeds x parts x families x (hits, queries)
    except (KeyError, TypeError, RuntimeError):  # no counts, or not for this metric
        return math.nan
    weights = family_draws(a.shape[2], draws, seed)  # (D, F) how often each family is drawn

    def metric_of(x):  # (S, M, F, 2) -> (D, S): the metric in each draw and seed
        hits, queries = (torch.einsum("df,smf->dsm", weights, x[..., i].double()) for i in (0, 1))
        return (100 * hits / queries).mean(-1)

    diff = (metric_of(a) - metric_of(b)).mean(-1)  # (D,) seed-averaged difference per draw
    return float(diff.std()) if torch.isfinite(diff).all() else math.nan


def family_draws(n_families: int, draws: int = TEST_DRAWS, seed: int = 0) -> torch.Tensor:
    """Bootstrap weights (D, F): how often each of F families is drawn in each of D resamples of size F."""
    picks = torch.randint(n_families, (draws, n_families), generator=torch.Generator().manual_seed(seed))  # (D, F)
    return torch.zeros(draws, n_families, dtype=torch.float64).scatter_add_(1, picks, torch.ones_like(picks, dtype=torch.float64))


def describe(contrast: Mapping) -> str:
    """One row of ``contrasts`` as a sentence (Markdown): how far the variant is from the reference,
    in points and in standard errors (the seeds', the test set's, and both together)."""
    diff, se, label = contrast["difference"], contrast["se"], metric_label(contrast["metric"])
    if contrast["verdict"] == "no pairs":
        return f"**{contrast['variant']}**: no seed where both it and **{contrast['reference']}** trained (failed runs)"
    se_total, se_test = contrast.get("se_total", se), contrast.get("se_test", math.nan)
    where = f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'}" if diff else "level with"
    if contrast["verdict"] == "within noise":
        judged = f"within noise: |difference| <= 2 se = {2 * se_total:.1f}"
    else:
        judged = f"beyond noise: {abs(contrast['ratio']):.1f} se"
    if contrast.get("pairs") == 1 and math.isfinite(se_test):  # one model (a knock-out): no seeds to spread over
        spread = f"se {se_test:.1f} over test families; one trained model, so no spread over seeds"
    elif math.isfinite(se_test):
        spread = f"se {se_total:.1f}: {se:.1f} over seeds, {se_test:.1f} over test families"
    else:
        spread = f"se of the paired difference {se:.1f}"
    return (f"**{contrast['variant']}**: {label} {contrast['mean']:.1f}, {where} **{contrast['reference']}** "
            f"({spread}; {judged})")


def _test_sims(cfg: HATConfig, train_config: TrainConfig, data_dir: str | Path, test,
               cache_dir: Path) -> tuple[torch.Tensor, bool]:
    """Similarities (N_img, N_cap) of one trained model on ``test``, and whether they came from the cache
    (else the model is trained, or loaded by ``train_or_load``, and scored)."""
    key = json.dumps([cfg.to_dict(), train_config.to_dict(), str(Path(data_dir).resolve()), test._fingerprint],
                     sort_keys=True)
    path = cache_dir / "sims" / f"{cfg.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True), True  # tensors only: a shared cache cannot run code
    model, _ = train_or_load(cfg, train_config, data_dir, cache_dir, progress=False)
    result = evaluate(model, test, progress=False, return_sims=True, workers=train_config.workers)
    sims = result["sims"]  # (N_img, N_cap)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(sims, tmp)
    tmp.replace(path)  # atomic: an interrupted run leaves no half-written file
    return sims, False


def _failed(rsum: float, n_images: int) -> bool:
    """Near chance: rSum less than FAILED_SHARE of the way from a random scorer's rSum to 600."""
    chance = chance_recall(n_images)["rsum"]
    return rsum < chance + FAILED_SHARE * (600.0 - chance)


def _models(variant: Variant) -> tuple[HATConfig, ...]:
    return variant if isinstance(variant, tuple) else (variant,)


def _key(cfg: HATConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def _describe(cfg: HATConfig) -> str:
    return f"{len(cfg.levels)} level(s), {cfg.direction}, lambda {cfg.lambda_softmax:g}"


def _var(values: pd.Series) -> float:
    """Sample variance; 0 for a single value (no spread measured)."""
    return float(values.var(ddof=1)) if len(values) > 1 else 0.0


def _check_grid(variants: Grid, seeds: Sequence[int]) -> None:
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {tuple(seeds)}")
    if not variants or not all(isinstance(g, Mapping) and g for g in variants.values()):
        raise ValueError("variants must be {question: {variant name: HATConfig or tuple of HATConfigs}}, "
                         "with at least one variant per question (see ablation_grid)")
    for question, group in variants.items():
        for name, variant in group.items():
            models = _models(variant)
            if not models or not all(isinstance(c, HATConfig) for c in models):
                raise TypeError(f"variant {question!r} / {name!r} must be a HATConfig or a tuple of them, "
                                f"got {type(variant).__name__}")


def _check_columns(runs: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs table lacks the column(s) {', '.join(missing)}; make it with run_ablation")
    if runs.empty:
        raise ValueError("the runs table is empty")
