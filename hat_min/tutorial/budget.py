"""What training costs on a GPU, for planning a notebook's work: step times measured on an H100, scaled to others.

Notebook 03 prints what the paper profile's training costs on each GPU; notebook 04 sizes its grid with
``plan`` so that, unasked, it starts no more than one Colab runtime of work.

- ``H100_STEP_S``, MEASURED (benchmarks/gpu.sh, two runs on H100 80GB HBM3 machines, 2026-11-27): seconds per
  training step of the paper's architecture at batch 58, 224 px, 32 tokens, bf16, Adam; data loading not
  included. "frozen": backbones frozen (the release's first 11 epochs), "trained": everything training.
- ``SLOWDOWN_VS_H100``, NOT MEASURED, an assumption: each GPU slower than an H100 SXM by the ratio of its dense
  fp16/bf16 tensor throughput (vendor TFLOPS: H100 989, A100 312, L4 121, T4 65), i.e. a compute-bound step.
- ``COLAB_RUNTIME_H``: the longest one Colab runtime lasts (12 hours, Colab's stated maximum; the free tier
  often ends sooner); ``PLANNING_GPU``: the T4 of Colab's free tier, the slowest GPU of the table.

    run_hours(TrainConfig.preset("colab"), F30K_PAIRS, "T4")     # (low, high) hours of one run
    plan({"levels": grid["levels"]}, (0,), TrainConfig.preset("colab"), F30K_PAIRS)   # runs and hours
"""
from __future__ import annotations

from collections.abc import Sequence

from ..training.recipe import TrainConfig
from .ablation import Grid, distinct_configs

F30K_PAIRS = 29_000 * 5  # the paper's Flickr30K training split: 29,000 images, five captions each
H100_STEP_S = {"frozen": (0.061, 0.069), "trained": (0.123, 0.178)}  # measured, two runs (low, high)
SLOWDOWN_VS_H100 = {"H100": 1.0, "A100": 989 / 312, "L4": 989 / 121, "T4": 989 / 65}  # assumed
COLAB_RUNTIME_H = 12.0
PLANNING_GPU = "T4"


def phase_steps(recipe: TrainConfig, n_pairs: int) -> dict[str, int]:
    """Optimiser steps of ``recipe`` over ``n_pairs`` training pairs with frozen and with trained backbones."""
    per_epoch = n_pairs // recipe.batch_size
    total = recipe.total_steps(per_epoch)
    frozen = min(total, recipe.freeze_backbone_epochs * per_epoch)
    return {"frozen": frozen, "trained": total - frozen}


def run_hours(recipe: TrainConfig, n_pairs: int, gpu: str = PLANNING_GPU) -> tuple[float, float]:
    """(low, high) hours one run of ``recipe`` takes on ``gpu``: H100 step times (measured) x its slowdown (assumed)."""
    if gpu not in SLOWDOWN_VS_H100:
        raise ValueError(f"no step time for GPU {gpu!r}; known: {', '.join(SLOWDOWN_VS_H100)}")
    steps = phase_steps(recipe, n_pairs)
    low, high = (sum(steps[phase] * H100_STEP_S[phase][i] for phase in steps) * SLOWDOWN_VS_H100[gpu] / 3600
                 for i in (0, 1))
    return low, high


def plan(grid: Grid, seeds: Sequence[int], recipe: TrainConfig, n_pairs: int, gpu: str = PLANNING_GPU,
         extra_runs: int = 0) -> dict:
    """The training runs a grid asks for (each distinct config once per seed, plus ``extra_runs`` of the same
    recipe, e.g. notebook 03's model when it is not trained yet) and their (low, high) hours on ``gpu``.

    Returns {"runs": int, "hours": (low, high), "gpu": gpu, "fits": high <= COLAB_RUNTIME_H}.
    """
    runs = (len(distinct_configs(grid)) * len(seeds) if grid else 0) + extra_runs
    low, high = run_hours(recipe, n_pairs, gpu)
    return {"runs": runs, "hours": (runs * low, runs * high), "gpu": gpu, "fits": runs * high <= COLAB_RUNTIME_H}
