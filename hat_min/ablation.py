"""Ablations of the hierarchical alignment: which levels, which direction, which lambda, over seeds.

Paper: Bin et al. 2023, ablation study (see HAT_METHOD.md). HAT scores a pair at three levels
(shallow Swin stage with shallow BERT layer, ..., deep with deep) by stacked cross-attention in
direction i2t with lambda 9, and sums the levels. An ablation trains the same recipe with one
of these choices changed, several times (seeds), and compares Recall@K on the test split.

    grid = ablation_grid(ABLATION_MODEL)                  # {question: {variant: config(s)}}
    runs = run_ablation(grid, ABLATION_TRAIN, "data/notebook_ablation", seeds=(0, 1, 2))
    table = summarize(runs)                                # mean and sd over seeds per variant
    contrasts(runs)                                        # each variant against HAT's own setting

A variant is one HATConfig, or a tuple of them: an ensemble, whose similarity matrix is the sum of
its models' (the paper's "i2t + t2i" row). Every (config, seed) is trained once with
``hat_min.train.train_or_load`` (cached under ``cache_dir``) and its test similarities are cached
beside it, so a variant that appears in two questions (HAT's own setting is the reference of all
three) costs one run per seed, and running the grid again only reads files.

``ABLATION_MODEL`` and ``ABLATION_TRAIN`` are a fast recipe for CPUs (about 15-20 s a run on two
idle cores, evaluation included): a smaller model than ``tiny`` with the same token grids at its
three levels (8x8, 4x4 and 2x2 regions), trained for 120 steps of 24 pairs with InfoNCE on the
generated scenes (``ABLATION_DATA``). It learns well above chance, far from convergence: read its
numbers as "what helps a small model learn fast", not as the paper's converged comparison.
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

from .config import HATConfig
from .data import load_splits
from .evaluate import evaluate
from .metrics import recall_at_k
from .train import TrainConfig, train_or_load

Variant = Union[HATConfig, tuple[HATConfig, ...]]  # one model, or an ensemble of models
Grid = Mapping[str, Mapping[str, Variant]]  # {question: {variant name: variant}}
HAT_MARK = "(HAT)"  # ablation_grid ends the name of HAT's own setting with it, in every question

METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
# Sizes of the generated dataset the fast recipe trains on (data_prep.synthetic.build keywords).
ABLATION_DATA = dict(n_train=1000, n_val=40, n_test=160, seed=0)
# The tiny preset made cheaper: Swin with 8-pixel patches and three stages, so that its stages
# have the token grids of tiny's stages 2-4 (8x8, 4x4, 2x2 at 64 px) without tiny's 16x16 stage;
# narrower Swin, BERT and shared width; no dropout (the runs are too short to overfit).
ABLATION_MODEL = HATConfig.preset(
    "tiny", swin_patch=8, swin_depths=(2, 2, 2), swin_heads=(2, 4, 8), swin_embed_dim=32,
    levels=((1, 2), (2, 3), (3, 4)), text_width=64, text_heads=2, text_dropout=0.0, embed_dim=64)
# The demo recipe's optimiser (AdamW, constant rate after a warm-up) made short. From random weights
# the loss first stays flat for tens of steps, and small batches leave that plateau sooner per second
# of CPU than large ones (48 pairs a step learned nothing in 60 steps; 24 and 32 did as well as each
# other in 120 steps, 24 at 3/4 of the cost). InfoNCE throughout: the curriculum's switch to the
# hardest-negative hinge would come in the last few steps, if at all, and at different steps for
# different variants. Every field is spelled out (not derived from the "demo" preset, which changes
# with `make demo`): no auxiliary global loss, nothing frozen, so that only the ablated setting varies.
# No DataLoader workers: the images are decoded up front, and a worker costs more to start than it saves.
ABLATION_TRAIN = TrainConfig(
    epochs=1, max_steps=120, batch_size=24, lr=1e-3, optimizer="adamw", weight_decay=1e-4, schedule="constant",
    warmup_steps=10, grad_clip=2.0, negatives="infonce", start_loss="infonce", temperature=0.1, global_loss_weight=0.0,
    val_images=20, checkpoint_every=10_000, workers=0)


def ablation_grid(base: HATConfig, lambdas: Sequence[float] = (1, 3, 9, 27)) -> dict[str, dict[str, Variant]]:
    """The three questions asked of ``base`` (HAT's own setting, named "... (HAT)" in every question):

    - levels: the top level alone, the top two, all of ``base.levels``;
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
    lambda, and Recall@K (``METRICS``, percent) on the whole ``split`` (the "1k" protocol).
    ``attrs["trained"]`` counts the runs trained (or loaded from a finished run folder) and scored now,
    ``attrs["cached"]`` those whose test similarities were read from the cache.
    """
    _check_grid(variants, seeds)
    test = load_splits(data_dir)[split]
    runs = {_key(cfg): cfg for cfg in distinct_configs(variants)}
    todo = [(key, seed) for seed in seeds for key in runs]
    bar = tqdm(todo, desc="ablation runs", unit="run", disable=not progress)
    sims: dict[tuple[str, int], torch.Tensor] = {}
    cached = 0
    for key, seed in bar:
        bar.set_postfix_str(_describe(runs[key]) + f", seed {seed}")
        sims[key, seed], hit = _test_sims(runs[key], train_config.replace(seed=seed), data_dir, test, Path(cache_dir))
        cached += hit
    rows = []
    for question, group in variants.items():
        for name, variant in group.items():
            models = _models(variant)
            for seed in seeds:
                total = sum(sims[_key(cfg), seed] for cfg in models)  # (N_img, N_cap) an ensemble adds its models
                metrics = recall_at_k(total)
                rows.append({"question": question, "variant": name, "seed": seed, "models": len(models),
                             "levels": len(models[0].levels), "direction": "+".join(c.direction for c in models),
                             "lambda": models[0].lambda_softmax, **{m: metrics[m] for m in METRICS}})
    table = pd.DataFrame(rows)
    table.attrs.update(trained=len(todo) - cached, cached=cached)
    return table


def summarize(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds per (question, variant), in the grid's order.

    Columns are (metric, "mean") and (metric, "sd") pairs, and ("seeds", "n").
    """
    _check_columns(runs, ["question", "variant", "seed", *metrics])
    groups = runs.groupby(["question", "variant"], sort=False)
    table = groups[list(metrics)].agg(["mean", "std"]).rename(columns={"std": "sd"}, level=1)
    table[("seeds", "n")] = groups["seed"].nunique()
    return table


def contrasts(runs: pd.DataFrame, references: Mapping[str, str] | None = None, metric: str = "rsum") -> pd.DataFrame:
    """Each variant of a question against that question's reference variant, on ``metric``.

    ``references``: {question: variant}; default, in each question the variant whose name ends
    with ``HAT_MARK`` (HAT's own setting in ``ablation_grid``).

    Columns: question, variant, reference, metric, mean (of the variant), difference (variant minus
    reference), se (standard error of that difference, unpaired: sqrt(sd_a^2/n_a + sd_b^2/n_b)),
    ratio (difference / se), and verdict: "higher" or "lower" when |difference| > 2 se, else
    "within noise". With three seeds per variant, 2 se is a loose bar, not a significance test.
    """
    _check_columns(runs, ["question", "variant", "seed", metric])
    if references is None:
        references = {q: v for q, v in runs[["question", "variant"]].drop_duplicates().itertuples(index=False)
                      if v.endswith(HAT_MARK)}
    rows = []
    for question, reference in references.items():
        group = runs[runs["question"] == question]
        if reference not in set(group["variant"]):
            raise ValueError(f"no variant {reference!r} in question {question!r}; "
                             f"it has {sorted(set(group['variant']))}")
        ref = group.loc[group["variant"] == reference, metric]
        for name, values in group.groupby("variant", sort=False)[metric]:
            if name == reference:
                continue
            diff = values.mean() - ref.mean()
            se = math.sqrt(_var(values) / len(values) + _var(ref) / len(ref))
            if se > 0:
                ratio = diff / se
            else:  # no spread measured (one seed, or identical values): any difference counts
                ratio = math.copysign(math.inf, diff) if diff else 0.0
            verdict = "within noise" if abs(ratio) <= 2 else ("higher" if diff > 0 else "lower")
            rows.append({"question": question, "variant": name, "reference": reference, "metric": metric,
                         "mean": values.mean(), "difference": diff, "se": se, "ratio": ratio, "verdict": verdict})
    return pd.DataFrame(rows)


def describe(contrast: Mapping) -> str:
    """One row of ``contrasts`` as a sentence (Markdown): how far the variant is from the reference,
    in points and in standard errors."""
    diff, se, label = contrast["difference"], contrast["se"], _metric_label(contrast["metric"])
    where = f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'}" if diff else "level with"
    if contrast["verdict"] == "within noise":
        judged = f"within noise: |difference| <= 2 se = {2 * se:.1f}"
    else:
        judged = f"beyond noise: {abs(contrast['ratio']):.1f} se"
    return (f"**{contrast['variant']}**: {label} {contrast['mean']:.1f}, {where} **{contrast['reference']}** "
            f"(se of the difference {se:.1f}; {judged})")


def _test_sims(cfg: HATConfig, train_config: TrainConfig, data_dir: str | Path, test,
               cache_dir: Path) -> tuple[torch.Tensor, bool]:
    """Similarities (N_img, N_cap) of one trained model on ``test``, and whether they came from the cache
    (else the model is trained, or loaded by ``train_or_load``, and scored)."""
    key = json.dumps([cfg.to_dict(), train_config.to_dict(), str(Path(data_dir).resolve()), test._fingerprint],
                     sort_keys=True)
    path = cache_dir / "sims" / f"{cfg.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"
    if path.is_file():
        return torch.load(path), True
    model, _ = train_or_load(cfg, train_config, data_dir, cache_dir, progress=False)
    result = evaluate(model, test, progress=False, return_sims=True, workers=train_config.workers)
    sims = result["sims"]  # (N_img, N_cap)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(sims, tmp)
    tmp.replace(path)  # atomic: an interrupted run leaves no half-written file
    return sims, False


def _models(variant: Variant) -> tuple[HATConfig, ...]:
    return variant if isinstance(variant, tuple) else (variant,)


def _key(cfg: HATConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def _describe(cfg: HATConfig) -> str:
    return f"{len(cfg.levels)} level(s), {cfg.direction}, lambda {cfg.lambda_softmax:g}"


def _metric_label(name: str) -> str:
    """i2t_r1 -> 'i2t R@1', rsum -> 'rSum'."""
    return "rSum" if name == "rsum" else name.replace("_r", " R@")


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
