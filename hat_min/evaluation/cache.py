"""Scores kept on disk: one model's scores of one split, read back by the next notebook instead of recomputed.

Scoring a 1,000-image split costs about a minute on two CPU cores (``protocols.evaluate``) and notebooks
03, 04 and 05 score the same trained model on the same splits. A score file is named by what the scores
depend on: the model's config and every weight, and the split (its fingerprint and length), so a retrained
model or another split never reads stale scores. Files hold tensors only (``torch.load(weights_only=True)``)
and are written atomically: an interrupted run leaves no half-written file.

    key = score_key(model, split)                        # 16 hex digits
    path = cache_dir / f"{model.config.name}-{key}-gallery.pt"
    saved = load_scores(path)                            # None when missing
    save_scores(path, {"sims": sims})
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn


def score_key(model: nn.Module, split, *extra) -> str:
    """A short hash of the model's config and weights, of the split and of ``extra`` (what the scores depend on)."""
    digest = hashlib.sha256(json.dumps([model.config.to_dict(), getattr(split, "_fingerprint", None), len(split),
                                        *extra], sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_scores(path: str | Path | None) -> dict[str, Tensor] | None:
    """The tensors saved at ``path``, or None when there is no file (or no path)."""
    if path is None or not Path(path).is_file():
        return None
    return torch.load(path, weights_only=True)


def save_scores(path: str | Path, tensors: dict) -> None:
    """Write ``tensors`` to ``path`` atomically (a temporary file, then a rename), making its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(tensors, tmp)
    tmp.replace(path)
