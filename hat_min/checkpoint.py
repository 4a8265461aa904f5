"""Resumable training checkpoints, written so that a crash never destroys the last good one.

A checkpoint folder holds what ``HAT.save_pretrained`` writes (``model.safetensors`` and
``config.json``: enough to use the model, without pickle and without this repo's training code)
plus ``training_state.pt`` (optimiser, scheduler, scaler, RNG states, progress) and
``train_config.json``. It is written into a temporary folder beside its place and swapped in
with renames, so a crash or a full disk while saving leaves the previous checkpoint whole.

    save_training_state(out / "last", model, optimizer, scheduler, scaler, state, train_config)
    state = load_training_state(out / "last", model, optimizer, scheduler, scaler, model_config, train_config)
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import HATConfig
from .model import HAT

STATE_NAME = "training_state.pt"
TRAIN_CONFIG_NAME = "train_config.json"


@dataclass
class TrainState:
    """Progress of a run: all a resumed run needs besides the weights and the optimiser."""

    step: int = 0  # optimiser steps done
    best_rsum: float = -math.inf  # best validation rSum so far
    hardest: bool = False  # curriculum: training with the hardest negative now
    hardest_from_step: int | None = None  # when the curriculum switched
    accuracy_ema: float = 0.0  # running in-batch accuracy (drives the curriculum)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per validation


def save_training_state(directory: Path, model: HAT, optimizer, scheduler, scaler, state: TrainState,
                        train_config: Any) -> Path:
    """Write a complete, resumable checkpoint to ``directory``, replacing the old one atomically."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        model.save_pretrained(tmp)
        torch.save({
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "state": dataclasses.asdict(state), "rng": _rng_states(),
        }, tmp / STATE_NAME)
        (tmp / TRAIN_CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(train_config), indent=2))
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_training_state(directory: Path, model: HAT, optimizer, scheduler, scaler, model_config: HATConfig,
                        train_config: Any) -> TrainState:
    """Restore weights, optimiser, scheduler, scaler and RNG from ``directory``; returns the progress."""
    directory = Path(directory)
    saved = HAT.from_pretrained(directory, config=model_config)  # clear error if the config differs
    model.load_state_dict(saved.state_dict())
    _check_train_config(directory, train_config)
    blob = torch.load(directory / STATE_NAME, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    scaler.load_state_dict(blob["scaler"])
    _set_rng_states(blob["rng"])
    return TrainState(**blob["state"])


def find_checkpoint(directory: Path) -> Path | None:
    """``directory`` if it holds a checkpoint; else the previous one a crash during the swap left behind."""
    for candidate in (Path(directory), Path(directory).with_name(f".{Path(directory).name}.old")):
        if (candidate / STATE_NAME).is_file():
            return candidate
    return None


def _check_train_config(directory: Path, train_config: Any) -> None:
    """Fields that change the course of training must match; time budgets and step limits may differ."""
    free = {"max_steps", "epochs", "time_budget_s", "workers", "checkpoint_every"}
    saved = json.loads((directory / TRAIN_CONFIG_NAME).read_text())
    now = json.loads(json.dumps(dataclasses.asdict(train_config)))
    differ = {k: (saved.get(k), v) for k, v in now.items() if k not in free and saved.get(k) != v}
    if differ:
        fields = ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in differ.items())
        raise ValueError(f"cannot resume from {directory}: the training config differs in {fields}")


def _swap_in(tmp: Path, directory: Path) -> None:
    """Replace ``directory`` by ``tmp`` with two renames; the old one is deleted only afterwards."""
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
