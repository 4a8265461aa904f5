"""Training HAT: the loop, and what a serious trainer needs around it.

    model, summary = train(HATConfig.preset("tiny"), TrainConfig.preset("demo"), "data/synthetic", "runs/demo")

Read it in this order: ``train`` (the epochs: freeze schedule, loader, validation, checkpoint), ``_run_epoch``
(the steps: progress bar, log, curriculum, periodic validation and checkpoints), ``_train_step`` (one
optimiser step: the model's objective, backward, clip, step). The loss itself is the model's:
``HAT.objective`` (hat_min/model.py); the recipe only chooses its ``negatives`` and weights.

- mixed precision on GPUs (bf16 where supported, else fp16 with a GradScaler), fp32 on CPU;
- the paper's optimiser and schedule (Adam 1e-4, x0.1 every 10 epochs) or AdamW + warm-up + cosine,
  or a constant rate after a warm-up; gradient accumulation and clipping;
- HAT's freeze schedule: backbones frozen for the first N epochs, only the projections train;
- negatives: the hardest in the batch (VSE++), all of them, or a curriculum (all first, then the
  hardest once the model ranks enough of its own batch right: from random initialisation the
  hardest negative alone gives no useful signal, while the sum over all negatives does);
- progress bars, a one-line summary per epoch, a metrics log (``metrics.jsonl``);
- validation Recall@K every epoch (and every ``val_every`` steps), the best model kept by rSum (``best/``);
  the generated scenes' generalisation splits scored beside it, for the log only (never selected on);
- resumable checkpoints (``last/``), written atomically; ``resume=True`` continues a killed run and
  reaches the same result as an uninterrupted one on CPU (the same configs and data, or a clear refusal);
  a run folder already used is never overwritten without ``overwrite=True``, and then only once the new run's
  first step went well; one run per folder (a lock file), never inside the dataset;
- a non-finite loss stops the run with a clear message, keeping the last good checkpoint if there is one;
- several processes (``torchrun``): each encodes its slice of the global batch, features are
  gathered so that the hardest negatives come from the whole global batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from data_prep.splits import GENERALISATION_SPLITS

from ..config import SCRATCH, HATConfig
from ..encoders import load_tokenizer
from ..evaluation.data import first_images, load_splits
from ..evaluation.protocols import evaluate
from ..fast.device import autocast, grad_scaler, pick_device
from ..model import HAT
from . import distributed as dist
from .checkpoint import (TrainState, check_apart, check_run_folder, clean_stale_temp, clear_run, data_fingerprint,
                         find_checkpoint, load_training_state, save_training_state)
from .data import TrainPairs, check_for_training, train_loader
from .recipe import TrainConfig
from .runlock import run_lock
from .runlog import MetricsLog


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; a checkpoint already written is kept (the message says whether one exists)."""


def train(
    model_config: HATConfig,
    train_config: TrainConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool | str = False,
    device: str | None = None,
    progress: bool = True,
    on_step: Callable[[TrainState, HAT], None] | None = None,
    overwrite: bool = False,
) -> tuple[HAT, dict[str, Any]]:
    """Train, validate every epoch, keep ``out_dir/best`` and ``out_dir/last``; returns (best model, summary).

    ``resume=True`` continues from ``out_dir/last`` and refuses (``ValueError``, nothing changed) when
    there is no checkpoint there, or when it was made with another model config, recipe or dataset;
    ``resume="auto"`` continues if there is a checkpoint, else starts afresh in ``out_dir``. A new run
    (``resume=False``) starts in an empty or missing folder, and in one that holds an earlier run
    (``metrics.jsonl``, ``best/``, ``last/``) only with ``overwrite=True``, which deletes those once the new
    run's first step went well (a run failing before leaves them as they were).
    ``on_step(state, model)`` is called after every optimiser step (live plots in notebooks, tests).
    The summary's ``best_rsum`` is None when the run never validated.

    One run per folder: ``out_dir`` is locked while the run lasts (``runlock.run_lock``: a second run into it is
    refused, naming the first one's pid), and it may neither be nor contain nor lie inside ``data_dir``.
    """
    check_apart(out_dir, data_dir)
    rank, _ = dist.setup()
    with run_lock(out_dir) if rank == 0 else contextlib.nullcontext():
        return _train(model_config, train_config, data_dir, Path(out_dir), resume, device, progress, on_step,
                      overwrite)


def _train(model_config: HATConfig, train_config: TrainConfig, data_dir, out_dir: Path, resume: bool | str,
           device: str | None, progress: bool, on_step, overwrite: bool) -> tuple[HAT, dict[str, Any]]:
    """``train`` in its locked folder."""
    run, splits, pairs, tokenizer = _start(model_config, train_config, data_dir, out_dir, resume, device, overwrite,
                                           progress)
    while run.state.step < run.total_steps and not run.out_of_time():
        epoch, done_in_epoch = divmod(run.state.step, run.steps_per_epoch)
        _set_backbones_trainable(run.model, epoch >= run.cfg.freeze_backbone_epochs,
                                 text_frozen(run.model.config, run.cfg), run.cfg.text_train_layers)
        pairs.base_frames_only = _base_frames_only(run)
        loader = train_loader(pairs, model_config, run.cfg.batch_size // run.cfg.grad_accum, tokenizer,
                              run.cfg.workers, run.cfg.seed, epoch, start=done_in_epoch * run.cfg.grad_accum,
                              rank=run.rank, world=run.world, device=run.dev, by_family=_by_family(run, pairs))
        if not _run_epoch(run, loader, epoch, progress, on_step, splits["val"]):
            continue  # the batches change mid-epoch (families, all captions): a new loader, same epoch
        _validate(run, splits["val"], progress)
        if run.rank == 0:
            run.save_last()
        dist.barrier()
    best_rsum = run.state.best_rsum if math.isfinite(run.state.best_rsum) else None  # None: never validated
    summary = {"steps": run.state.step, "best_rsum": best_rsum, "out_dir": str(run.out_dir),
               "hardest_from_step": run.state.hardest_from_step,
               "all_captions_from_step": run.state.all_captions_from_step,
               "seconds": round(time.monotonic() - run.started, 1)}
    model = HAT.from_pretrained(run.out_dir / "best").to(run.dev) if (run.out_dir / "best").is_dir() else run.model
    return model, summary


def train_or_load(
    model_config: HATConfig,
    train_config: TrainConfig,
    data_dir: str | Path,
    cache_dir: str | Path = "runs/cache",
    progress: bool = True,
    on_step: Callable[[TrainState, HAT], None] | None = None,
) -> tuple[HAT, dict[str, Any]]:
    """The best model of this exact recipe: trained once, then loaded from ``cache_dir`` (notebooks use it).

    The run lives in ``cache_dir/<preset>-<hash>``, the hash covering both configs and the data
    folder, so that a changed setting trains anew. A run that was interrupted resumes where it stopped
    (``resume="auto"``: one killed before its first checkpoint starts again in the same folder).
    ``on_step`` is passed to ``train`` (it is never called when the cached run is complete). Loading a
    complete run writes nothing into its folder (its ``metrics.jsonl`` keeps its bytes and time).
    """
    out_dir = cached_run_dir(model_config, train_config, data_dir, cache_dir)
    return train(model_config, train_config, data_dir, out_dir, resume="auto", progress=progress, on_step=on_step)


def cached_run_dir(model_config: HATConfig, train_config: TrainConfig, data_dir: str | Path,
                   cache_dir: str | Path = "runs/cache") -> Path:
    """The folder ``train_or_load`` trains this exact recipe into (its ``best/`` is there once it validated)."""
    key = json.dumps([model_config.to_dict(), train_config.to_dict(), str(Path(data_dir).resolve())], sort_keys=True)
    return Path(cache_dir) / f"{model_config.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass
class _Run:
    """Everything one training run holds."""

    model: HAT
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    cfg: TrainConfig
    state: TrainState
    log: MetricsLog
    out_dir: Path
    dev: torch.device
    rank: int
    world: int
    steps_per_epoch: int
    total_steps: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    data: dict[str, Any] | None = None  # the dataset's fingerprint, saved in last/ and compared on resume
    earlier: list[str] | None = None  # the earlier run's files, deleted at this run's first write (claim)
    checkpoint_step: int | None = None  # the step of the newest checkpoint in out_dir/last (None: none yet)
    # The dataset's generalisation splits (the generated scenes' test_unseen, test_frames, test_words), scored at
    # every validation for the log only ("generalisation" records): they never choose best/.
    report: dict[str, Any] = dataclasses.field(default_factory=dict)

    def out_of_time(self) -> bool:
        return self.cfg.time_budget_s is not None and time.monotonic() - self.started > self.cfg.time_budget_s

    def claim(self) -> None:
        """Before this run's first write (after its first finite step): only now does an earlier run go
        (``overwrite``, or ``resume="auto"`` without a checkpoint), so a run that fails before deletes nothing."""
        if self.earlier is not None and self.rank == 0:
            clear_run(self.out_dir, self.earlier)
            self.log.start()
        self.earlier = None

    def save_last(self) -> None:
        self.claim()
        save_training_state(self.out_dir / "last", self.model, self.optimizer, self.scheduler, self.scaler,
                            self.state, self.cfg, self.data)
        self.checkpoint_step = self.state.step


def _start(model_config: HATConfig, cfg: TrainConfig, data_dir, out_dir: Path, resume: bool | str,
           device: str | None, overwrite: bool = False, progress: bool = True):
    """Build data, model, optimiser, schedule and log; restore them from ``out_dir/last`` when resuming."""
    rank, world = dist.setup()
    last, earlier = check_run_folder(out_dir, resume, overwrite)  # refuses before anything is built or changed
    dev = dist.device_for(rank, device) if world > 1 else pick_device(device)
    torch.manual_seed(cfg.seed)
    splits = load_splits(data_dir)
    check_for_training(splits, cfg)  # missing splits, blank captions, too few val captions: before any step
    model = HAT(model_config).to(dev)
    pairs = TrainPairs(splits["train"], model_config, progress=progress)  # built once: may decode every image up front
    steps_per_epoch = len(pairs) // cfg.batch_size  # >= 1: check_for_training refused fewer pairs than a batch
    optimizer = _optimizer(model, cfg)
    scheduler = _scheduler(optimizer, cfg, steps_per_epoch)
    scaler = grad_scaler(dev, cfg.precision)
    state, data = TrainState(), data_fingerprint(data_dir, splits)
    if last is not None:
        state = load_training_state(last, model, optimizer, scheduler, scaler, model_config, cfg, data)
    if rank == 0:
        clean_stale_temp(out_dir)
    log = MetricsLog(out_dir / "metrics.jsonl", keep_until=state.step, enabled=rank == 0)  # read, written from claim
    total = cfg.total_steps(steps_per_epoch)
    run = _Run(model, optimizer, scheduler, scaler, cfg, state, log, out_dir, dev, rank, world, steps_per_epoch, total,
               data=data, earlier=earlier, checkpoint_step=state.step if last is not None else None,
               report={name: first_images(splits[name], cfg.val_images) for name in GENERALISATION_SPLITS
                       if name in splits and cfg.log_generalisation})
    return run, splits, pairs, load_tokenizer(model_config)


def _by_family(run: _Run, pairs: TrainPairs) -> bool:
    """Whether this part of the run draws its batches as whole families of hard negatives."""
    mode = run.cfg.batch_by_family
    wanted = mode == "always" or (mode == "after_switch" and run.state.hardest)
    return wanted and pairs.family_of_row is not None  # data without families: random batches


def _base_frames_only(run: _Run) -> bool:
    """Whether this part of the run trains on the generator's base frames only (base_frames_until_accuracy)."""
    return run.cfg.base_frames_until_accuracy is not None and run.state.all_captions_from_step is None


def _run_epoch(run: _Run, loader, epoch: int, progress: bool, on_step, val_split) -> bool:
    """Optimiser steps until the epoch ends, the step limit or the time budget (True), or until the
    batches must change (False); checkpoints, and validations every ``val_every`` steps, on the way."""
    cfg, state = run.cfg, run.state
    bar = tqdm(total=min(run.steps_per_epoch, run.total_steps - epoch * run.steps_per_epoch),
               initial=state.step % run.steps_per_epoch, desc=f"epoch {epoch + 1}",
               disable=not progress or run.rank != 0, dynamic_ncols=True)
    for batches in _groups(loader, cfg.grad_accum):
        objective = _loss_name(state, cfg)
        loss, accuracy = _train_step(run, batches)
        if not math.isfinite(loss):
            saved = (f"the last good checkpoint ({find_checkpoint(run.out_dir / 'last')}, step {run.checkpoint_step}) "
                     f"is kept" if run.checkpoint_step is not None else
                     f"the earlier run in {run.out_dir} is left as it was" if run.earlier else
                     f"no checkpoint was written yet (every {cfg.checkpoint_every} steps and at each epoch's end)")
            bar.close()  # before the error line, not after it
            raise NonFiniteLossError(f"the loss became {loss} at step {state.step + 1}; stopped, {saved}: lower the "
                                     f"learning rate or use precision='fp32'")
        run.claim()
        run.scheduler.step()
        state.step += 1
        _update_curriculum(state, cfg, accuracy)
        lr = run.optimizer.param_groups[0]["lr"]
        bar.update()
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{state.accuracy_ema:.2f}", lr=f"{lr:.1e}", neg=_loss_name(state, cfg))
        run.log.write({"step": state.step, "epoch": epoch + 1, "loss": loss, "objective": objective,
                       "accuracy": accuracy, "lr": lr})
        end = state.step >= run.total_steps or state.step % run.steps_per_epoch == 0 or run.out_of_time()
        if cfg.val_every and state.step % cfg.val_every == 0 and not end:  # the end validates anyway
            _validate(run, val_split, progress)
        if state.step % cfg.checkpoint_every == 0 and not end and run.rank == 0:  # the end saves after validation
            run.save_last()
        if on_step is not None:
            on_step(state, run.model)
        if end:
            break
        if (_by_family(run, loader.dataset) != loader.batch_sampler.by_family
                or _base_frames_only(run) != loader.dataset.base_frames_only):
            bar.close()
            return False
    bar.close()
    return True


def _train_step(run: _Run, batches: list[dict]) -> tuple[float, float]:
    """One optimiser step over ``grad_accum`` micro-batches: the model's objective, backward, clip, step.

    Returns (loss, in-batch accuracy). Several processes: each encodes its slice of the global batch and
    ``dist.gather_batch`` hands the model every slice's features, so the negatives come from the whole batch.
    """
    model, cfg = run.model, run.cfg
    model.train()
    if text_frozen(model.config, cfg):
        model.text_encoder.eval()  # no dropout; autograd records nothing but its text_train_layers
    run.optimizer.zero_grad(set_to_none=True)
    objective = {"negatives": _loss_name(run.state, cfg), "temperature": cfg.temperature,
                 "pooled_weight": cfg.global_loss_weight, "pooled_temperature": cfg.global_temperature}
    total_loss, accuracy = 0.0, 0.0
    for batch in batches:
        ids, mask = dist.pad_to_global(batch["input_ids"], batch["attention_mask"])  # (b, W), one W everywhere
        with autocast(run.dev, cfg.precision):
            scores, loss = model(batch["images"].to(run.dev, non_blocking=True), ids.to(run.dev), mask.to(run.dev),
                                 batch["image_ids"].to(run.dev), gather=dist.gather_batch, **objective)  # (B, B), ()
        run.scaler.scale(loss / len(batches)).backward()
        total_loss += loss.item() / len(batches)
        accuracy += _in_batch_accuracy(scores.detach()) / len(batches)
    dist.average_gradients(model)
    if cfg.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return total_loss, accuracy


def _in_batch_accuracy(scores: torch.Tensor) -> float:
    """Share of images whose best caption, and captions whose best image, is their own (mean of both)."""
    target = torch.arange(scores.shape[0], device=scores.device)
    i2t = (scores.argmax(dim=1) == target).float().mean()
    t2i = (scores.argmax(dim=0) == target).float().mean()
    return ((i2t + t2i) / 2).item()


def _loss_name(state: TrainState, cfg: TrainConfig) -> str:
    """The loss of this step: "hardest", "all" or "infonce"."""
    if cfg.negatives != "curriculum":
        return cfg.negatives
    return cfg.end_loss if state.hardest else cfg.start_loss


def _update_curriculum(state: TrainState, cfg: TrainConfig, accuracy: float) -> None:
    """Keep a running in-batch accuracy; switch to the hardest negative once it passes the threshold, and from the
    base frames to all captions once it passes theirs."""
    state.accuracy_ema = 0.9 * state.accuracy_ema + 0.1 * accuracy
    if cfg.negatives == "curriculum" and not state.hardest and state.accuracy_ema >= cfg.switch_accuracy:
        state.hardest, state.hardest_from_step = True, state.step
    until = cfg.base_frames_until_accuracy
    if until is not None and state.all_captions_from_step is None and state.accuracy_ema >= until:
        state.all_captions_from_step = state.step


def _validate(run: _Run, val_split, progress: bool) -> None:
    """Recall@K on the validation split; the best model (by ``select_by``: rSum or the R@1 sum) goes to
    ``out_dir/best``."""
    if run.rank != 0:
        return
    run.claim()
    cfg, state = run.cfg, run.state
    metrics = evaluate(run.model, first_images(val_split, cfg.val_images), device=run.dev, progress=False)
    record = {"step": state.step, **{k: round(v, 2) for k, v in metrics.items() if isinstance(v, float)}}
    state.history.append(record)
    run.log.write({"validation": record})
    for name, split in run.report.items():  # reported, never selected on
        scores = evaluate(run.model, split, device=run.dev, progress=False)
        run.log.write({"generalisation": {"split": name, "step": state.step,
                                          **{k: round(v, 2) for k, v in scores.items() if isinstance(v, float)}}})
    score = metrics["rsum"] if cfg.select_by == "rsum" else metrics["i2t_r1"] + metrics["t2i_r1"]
    if score > state.best_rsum:  # best_rsum holds the score select_by chooses (rSum by default)
        state.best_rsum = score
        run.model.save_pretrained(run.out_dir / "best")
    if progress:
        family = (f", within family i2t {metrics['family_i2t']:.1f} t2i {metrics['family_t2i']:.1f}"
                  if "family_i2t" in metrics else "")
        best = f"best {state.best_rsum:.1f}" if cfg.select_by == "rsum" else f"best R@1 sum {state.best_rsum:.1f}"
        tqdm.write(f"step {state.step}: val R@1 i2t {metrics['i2t_r1']:.1f} t2i {metrics['t2i_r1']:.1f} "
                   f"rsum {metrics['rsum']:.1f} ({best}){family}")


def _groups(loader, size: int):
    """Yield lists of ``size`` consecutive micro-batches (one optimiser step each)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


def _optimizer(model: HAT, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())  # frozen backbones simply get no gradient
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel (one pass over all parameters; 6x faster than the default on a CPU), where this
    # torch has it for these devices; the same update otherwise.
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    try:
        return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    except RuntimeError:  # an older torch without the fused kernel for this device
        return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning-rate factor per optimiser step: linear warm-up, then step decay, cosine or constant."""
    total = max(1, cfg.total_steps(steps_per_epoch))

    def factor(step: int) -> float:
        cooldown = min(1.0, (total - step) / cfg.cooldown_steps) if cfg.cooldown_steps else 1.0
        return max(0.0, cooldown) * schedule(step)

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "step":
            return cfg.lr_gamma ** (step // (cfg.lr_step_epochs * steps_per_epoch))
        if cfg.schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def text_frozen(model_config: HATConfig, cfg: TrainConfig) -> bool:
    """Whether the recipe keeps this model's text encoder frozen: ``freeze_text`` holds for pretrained text
    encoders only (a random one must learn)."""
    return cfg.freeze_text and model_config.text_model != SCRATCH


def _set_backbones_trainable(model: HAT, trainable: bool, freeze_text: bool = False, text_train_layers: int = 0) -> None:
    """HAT's freeze schedule: with frozen backbones only the projections learn (and the per-level norms, unless
    ``HATConfig.swin_final_norm`` makes them part of the backbone, as in the release).

    ``freeze_text`` keeps the text encoder frozen but for its top ``text_train_layers`` layers.
    """
    for p in model.image_encoder.parameters():
        p.requires_grad_(trainable)
    for p in model.text_encoder.parameters():
        p.requires_grad_(trainable and not freeze_text)
    if model.config.swin_final_norm:  # the release's level norms belong to the backbone (HATConfig.swin_final_norm)
        model.image_norms.requires_grad_(trainable)
    if trainable and freeze_text and text_train_layers:
        for layer in model.text_encoder.bert.encoder.layer[-text_train_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
