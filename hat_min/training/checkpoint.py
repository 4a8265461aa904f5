"""Resumable training checkpoints, written so that a crash never destroys the last good one.

A checkpoint folder holds what ``HAT.save_pretrained`` writes (``model.safetensors`` and
``config.json``: enough to use the model, without pickle and without this repo's training code)
plus ``training_state.pt`` (optimiser, scheduler, scaler, RNG states, progress: plain tensors,
numbers, strings, lists and dicts, read with ``torch.load(weights_only=True)``, so that a file in a
shared run folder cannot run code), ``train_config.json`` and ``data.json`` (a fingerprint of the
dataset: a resumed run must train on the same data). It is written into a temporary folder
beside its place (``.last.XXXXXXXX``, marked as ours by a ``TEMP_MARKER`` file inside) and swapped in
with renames, so a crash or a full disk while saving leaves the previous checkpoint whole;
``clean_stale_temp`` removes the marked temporary folders a killed run left behind. Files and folders
get the modes the umask gives (``data.json`` alike), so a run folder shared with a group stays readable.
A truncated or corrupt file is a ``ValueError`` naming it.

The run folder around it (``metrics.jsonl``, ``best/``, ``last/``) follows ``check_run_folder``: a new
run never starts over an earlier one unless told to overwrite it (``clear_run``), and a resumed run
needs a checkpoint of the same configs and data (``data_fingerprint``).

    save_training_state(out / "last", model, optimizer, scheduler, scaler, state, train_config, data)
    state = load_training_state(out / "last", model, optimizer, scheduler, scaler, model_config, train_config, data)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import HATConfig
from ..model import HAT, read_json, umask

STATE_NAME = "training_state.pt"
TRAIN_CONFIG_NAME = "train_config.json"
DATA_NAME = "data.json"
TEMP_MARKER = ".hat_min-temp"  # inside a checkpoint being written: "PID HOST" of the process writing it


@dataclass
class TrainState:
    """Progress of a run: all a resumed run needs besides the weights and the optimiser."""

    step: int = 0  # optimiser steps done
    best_rsum: float = -math.inf  # best validation rSum so far
    hardest: bool = False  # curriculum: training with the hardest negative now
    hardest_from_step: int | None = None  # when the curriculum switched
    accuracy_ema: float = 0.0  # running in-batch accuracy (drives the curricula)
    all_captions_from_step: int | None = None  # caption curriculum: when training left the base frames (None: not yet)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per validation


def save_training_state(directory: Path, model: HAT, optimizer, scheduler, scaler, state: TrainState,
                        train_config: Any, data: dict[str, Any] | None = None) -> Path:
    """Write a complete, resumable checkpoint to ``directory``, replacing the old one atomically.

    ``data`` is the dataset's fingerprint (``hat_min.training.loop`` makes it), compared when resuming.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        tmp.chmod(0o777 & ~umask())  # mkdtemp's 0700 would keep a shared run folder's group out
        (tmp / TEMP_MARKER).write_text(f"{os.getpid()} {socket.gethostname()}\n")  # clean_stale_temp's: ours
        model.save_pretrained(tmp)
        torch.save({
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "state": dataclasses.asdict(state), "rng": _rng_states(),
        }, tmp / STATE_NAME)
        (tmp / TRAIN_CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(train_config), indent=2))
        if data is not None:
            (tmp / DATA_NAME).write_text(json.dumps(data, indent=2))
        (tmp / TEMP_MARKER).unlink()  # a checkpoint now, not a temporary folder: a copy of it is never removed
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_training_state(directory: Path, model: HAT, optimizer, scheduler, scaler, model_config: HATConfig,
                        train_config: Any, data: dict[str, Any] | None = None) -> TrainState:
    """Restore weights, optimiser, scheduler, scaler and RNG from ``directory``; returns the progress.

    Refuses (``ValueError`` naming what differs) a checkpoint of another model config, training
    recipe or dataset (``data``: the fingerprint ``save_training_state`` got), and names the file
    that is truncated, corrupt or holds anything but plain tensors and containers.
    """
    directory = Path(directory)
    saved = HAT.from_pretrained(directory, config=model_config)  # clear error if the config differs
    model.load_state_dict(saved.state_dict())
    _check_train_config(directory, train_config)
    if data is not None:
        _check_data(directory, data)
    blob = _load_plain(directory / STATE_NAME)
    try:
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        scaler.load_state_dict(blob["scaler"])
        _set_rng_states(blob["rng"])
        return TrainState(**blob["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{directory / STATE_NAME} does not hold a training state this run can resume "
                         f"({type(err).__name__}: {err})") from None


def _load_plain(path: Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, never pickled code."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise ValueError(f"{path} is not a plain tensor file: it holds a pickled object{what}; refusing to unpickle "
                         f"it (that could run any code); a checkpoint of hat_min holds tensors and numbers only") from None
    except (RuntimeError, OSError, EOFError) as err:
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else "empty file"
        raise ValueError(f"{path} is truncated or corrupt ({type(err).__name__}: {reason}); restore it, or resume "
                         f"from another checkpoint") from None
    if not isinstance(blob, dict):
        raise ValueError(f"{path} does not hold a training state (a {type(blob).__name__}, not a dict)")
    return blob


def find_checkpoint(directory: Path) -> Path | None:
    """``directory`` if it holds a checkpoint; else the previous one a crash during the swap left behind."""
    for candidate in (Path(directory), Path(directory).with_name(f".{Path(directory).name}.old")):
        if (candidate / STATE_NAME).is_file():
            return candidate
    return None


RUN_FILES = ("metrics.jsonl", "best", "last", ".last.old")  # what a run writes into its folder


def check_run_folder(out_dir: Path, resume: bool | str, overwrite: bool) -> tuple[Path | None, list[str]]:
    """Check that this run may use ``out_dir``: (the checkpoint to resume from or None, the earlier run's
    files to delete before starting).

    Refuses, changing nothing, to resume without a checkpoint or to start over an earlier run without
    ``overwrite``; ``resume="auto"`` without a checkpoint starts over whatever a killed run left.
    """
    if resume not in (True, False, "auto"):
        raise ValueError(f"resume must be True, False or 'auto', not {resume!r}")
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run in the folder, "
                         "overwrite deletes it")
    last = find_checkpoint(out_dir / "last")
    if resume is True and last is None:
        raise ValueError(f"cannot resume: {out_dir / 'last'} holds no checkpoint (no {STATE_NAME}); drop --resume "
                         f"(resume=False) and add --overwrite (overwrite=True) to start this run again from scratch")
    earlier = [name for name in RUN_FILES if _holds_a_run(out_dir / name)]
    if resume is False and earlier and not overwrite:
        raise ValueError(f"{out_dir} already holds a run ({', '.join(earlier)}): continue it with --resume "
                         f"(resume=True) or delete it and start again with --overwrite (overwrite=True)")
    return (last, []) if resume and last is not None else (None, earlier)


def check_apart(out_dir: str | Path, data_dir: str | Path) -> None:
    """Refuse a run folder that is, contains or lies inside the dataset (resolved paths): the run would write
    into the data, or a rebuild of the data would delete the run."""
    run, data = Path(out_dir).resolve(), Path(data_dir).resolve()
    how = "is" if run == data else "lies inside" if data in run.parents else "contains" if run in data.parents else None
    if how:
        raise ValueError(f"the run folder {out_dir} {how} the dataset {data_dir}; train into a folder apart from "
                         f"the data (--out)")


def clear_run(out_dir: Path, earlier: list[str]) -> None:
    """Delete an earlier run's files (so that no stale ``best/`` survives) and the temporary folders of a
    killed save (``.last.XXXXXXXX``; never ``.last.old``, a checkpoint ``find_checkpoint`` falls back to)."""
    clean_stale_temp(out_dir)
    for name in earlier:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _holds_a_run(path: Path) -> bool:
    """Whether ``path`` (a run file or folder) holds anything to lose; an empty log does not."""
    return path.is_dir() or (path.is_file() and path.stat().st_size > 0)


def data_fingerprint(data_dir: str | Path, splits) -> dict[str, Any]:
    """What makes a dataset this dataset for training, cheaply (no image is read): its folder, the sizes
    of the train and val splits and hashes of the training images' ids and of the validation split's ids and captions."""

    def digest(*columns) -> str:
        return hashlib.sha256(json.dumps([list(c) for c in columns]).encode()).hexdigest()[:16]

    return {"path": str(Path(data_dir).resolve()), "sizes": {name: len(splits[name]) for name in ("train", "val")},
            "train_ids": digest(splits["train"]["image_id"]),
            "val_ids_captions": digest(splits["val"]["image_id"], splits["val"]["captions"])}


def clean_stale_temp(out_dir: Path) -> list[Path]:
    """Remove the temporary ``.last.XXXXXXXX`` folders a killed save left in ``out_dir``; returns them.

    Only folders ``save_training_state`` made (they hold its ``TEMP_MARKER`` until the swap) go, never one
    by its name alone (a user's ``.last.bak``); ``.last.old`` stays: it is the previous checkpoint when a
    crash came between the two renames of the swap (``find_checkpoint`` falls back to it). Called while
    the run folder's lock is held (``hat_min.training.runlock``), so no live save is removed.
    """
    out_dir = Path(out_dir)
    stale = [p for p in out_dir.glob(".last.*") if p.is_dir() and not p.is_symlink() and p.name != ".last.old"
             and (p / TEMP_MARKER).is_file()] if out_dir.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _check_data(directory: Path, data: dict[str, Any]) -> None:
    """The dataset must be the one the checkpoint trained on: same split sizes and content hashes
    (its folder may have moved: the path alone is not compared). A checkpoint without ``data.json``
    (written before it existed) is not checked."""
    if not (directory / DATA_NAME).is_file():
        return
    saved = read_json(directory / DATA_NAME)
    differ = [k for k in sorted(set(saved) | set(data)) if k != "path" and saved.get(k) != data.get(k)]
    if differ:
        fields = ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now {data.get(k)!r})" for k in differ)
        raise ValueError(f"cannot resume from {directory}: it trained on other data ({saved.get('path')}, now "
                         f"{data.get('path')}): {fields}; train this data in another folder, or start over with "
                         f"--overwrite (overwrite=True)")


def _check_train_config(directory: Path, train_config: Any) -> None:
    """Fields that change the course of training must match; time budgets and step limits may differ."""
    free = {"max_steps", "epochs", "time_budget_s", "workers", "checkpoint_every"}
    if not (directory / TRAIN_CONFIG_NAME).is_file():
        raise ValueError(f"{directory} holds no {TRAIN_CONFIG_NAME}: not a checkpoint this run can resume")
    saved = read_json(directory / TRAIN_CONFIG_NAME)
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
