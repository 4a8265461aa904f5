"""What the offline weights share: the pretraining schedule, and the file + JSON card written for each.

A card records what was trained on what (data, seeds, steps), the file's sha256 and size, and the
accuracy of the weights as written on held-out items and on the first few (which the tests re-measure).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from ..encoders import file_sha256  # the hash on the cards, checked again when the weights are loaded

# What the pretraining scenes (data_prep.labels.pretraining_scenes) leave out; both cards record it.
EXCLUDED = ("every scene of the default generated dataset (seed 0: 10,000 / 500 / 1,000), and every group with a "
            "held-out combination (data_prep.captions.HELD_OUT_COMBINATIONS, the test_unseen split's)")


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The pretraining schedule: a linear warm-up over ``warmup`` steps, then a cosine to zero at ``steps``."""
    warmup = max(1, warmup)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))


def write_card(out: str | Path, name: str, state: dict[str, Tensor], card: dict, measure, held_out_n: int,
               check_n: int, command: str) -> dict:
    """Write ``name.safetensors`` (fp16) and ``name.json``: the card with the file's sha256 and size, and the
    accuracy ``measure(weights, n)`` of what was written on ``held_out_n`` and on the first ``check_n`` items."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.safetensors"
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(state, str(weights), metadata={"format": "pt"})
    card = {**card, "sha256": file_sha256(weights), "bytes": weights.stat().st_size,
            "held_out": {"items": held_out_n, "accuracy": measure(weights, held_out_n)},
            "check": {"items": check_n, "accuracy": measure(weights, check_n)},
            "command": command}
    text = json.dumps(card, indent=2) + "\n"
    (out / f"{name}.json").write_text(text)
    return json.loads(text)  # the card as written (tuples become lists)


