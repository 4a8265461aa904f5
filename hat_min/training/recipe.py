"""TrainConfig: how to train HAT, in one frozen dataclass with named presets (the model is HATConfig's).

    cfg = TrainConfig.preset("demo")                      # `make demo`'s recipe
    cfg = TrainConfig.preset("paper", max_steps=1000)      # the released recipe, fields replaced
    cfg = cfg.replace(lr=1e-3)                             # any override, validated again

``paper`` is the authors' recipe (Adam 1e-4, x0.1 every 10 epochs, batch 58, the hardest negative,
backbones frozen for 11 epochs); ``colab`` is its two phases shrunk to one Colab runtime; ``demo``
trains the ``minilm`` model on the generated scenes in a few minutes on a CPU; ``notebook`` is the
demo recipe validated every 100 steps (a validation curve for notebook 03, whose model notebooks 02
and 05 load); ``gpu`` is the demo recipe scaled to a GPU and the larger generated dataset (the
offline profile on a GPU, ``hat_min.tutorial.profiles``). ``hat_min.training.loop`` runs a recipe.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import check_fields


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the model itself is described by HATConfig)."""

    epochs: int = 30  # passes over all (image, caption) pairs
    max_steps: int | None = None  # stop after this many optimiser steps in all (None: epochs decide)
    batch_size: int = 58  # pairs per optimiser step, over all processes (paper: 58)
    grad_accum: int = 1  # micro-batches per optimiser step (batch_size must divide by it)
    lr: float = 1e-4  # peak learning rate
    optimizer: str = "adam"  # "adam" (paper) or "adamw"
    weight_decay: float = 0.0
    schedule: str = "step"  # "step": x lr_gamma every lr_step_epochs; "cosine"; "constant" (after warm-up)
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    # Warm-up: a few hundred steps of linearly rising learning rate keep Adam's first, badly
    # estimated updates from wrecking a freshly initialised model; afterwards the rate stays
    # constant for short CPU runs (a decay over a few minutes stops learning just as it starts).
    warmup_steps: int = 0
    # Cool-down: the rate falls linearly to zero over the last N steps of the run (after any schedule).
    # Annealing at the end settles the weights; with a constant rate before it, this is the
    # "warm-up, stable, decay" schedule, which needs no total length in advance but its last N steps.
    cooldown_steps: int = 0
    grad_clip: float | None = 2.0  # max global gradient norm (None: no clipping)
    freeze_backbone_epochs: int = 0  # backbones frozen (only the projections learn) for this many epochs (paper: 11)
    freeze_text: bool = False  # keep a pretrained text encoder frozen (no dropout, no backward); a scratch one trains
    text_train_layers: int = 0  # with freeze_text: this many of the text encoder's top layers train (without dropout)
    # The negatives of HAT.objective (hat_min/model.py): "hardest" (HAT's), "all", "infonce", or "curriculum"
    # (start_loss, then end_loss once the in-batch accuracy passes switch_accuracy).
    negatives: str = "hardest"
    # Batches of whole families of hard negatives, when the data has them (the generated scenes):
    # random batches of 64 out of thousands of images almost never hold an image's binding or role
    # swap, so the model could rank its batch well from a bag of words alone. "never", "always",
    # or "after_switch": random batches while the curriculum's first loss learns the words, then families.
    batch_by_family: str = "never"
    # A caption curriculum on the generated scenes: until the running in-batch accuracy (the one switch_accuracy
    # reads) reaches this, a caption written in one of the frames whose word order does not tell which group is on
    # top (data_prep.captions.MORE_TEMPLATES: "below F is S") trains as another caption of its image, in the
    # generator's ten base frames ("S below F"), where the group just before the relation is the one it places.
    # The roles are found through the word order first (on batches of whole families the accuracy stays near 0.5
    # until they are), then learnt in the frames where it misleads. None: off (captions of other data are never
    # replaced); a run whose accuracy never gets there trains on the base frames throughout.
    base_frames_until_accuracy: float | None = None
    start_loss: str = "all"  # curriculum: the first loss, "all" (hinge over all negatives) or "infonce"
    end_loss: str = "hardest"  # curriculum: the loss after the switch, "hardest" (HAT's), "all" or "infonce"
    temperature: float = 0.1  # InfoNCE temperature on HAT's summed scores (HAT.objective)
    switch_accuracy: float = 0.25  # curriculum: switch when in-batch accuracy (mean of both directions) passes it
    # Auxiliary InfoNCE on pooled global embeddings (hat_min.model.pooled_embedding; HAT.objective's pooled_weight):
    # it trains the first stage of two-stage retrieval (0: off, the paper's recipe).
    global_loss_weight: float = 0.0
    global_temperature: float = 0.05  # temperature of that auxiliary loss (on cosines)
    precision: str = "auto"  # "auto", "bf16", "fp16", "fp32"
    seed: int = 0
    checkpoint_every: int = 200  # optimiser steps between resumable checkpoints (and at each epoch end)
    val_images: int | None = None  # validate on the first N val images (None: the whole split)
    val_every: int | None = None  # also validate every N optimiser steps (None: at each epoch end and the run's end only)
    # Score the dataset's generalisation splits (the generated scenes' test_unseen, test_frames, test_words) on their
    # first val_images images beside every validation, for the log only (they never choose best/).
    log_generalisation: bool = True
    # Which validation keeps best/: "rsum" (the six recalls) or "r1_sum" (i2t R@1 + t2i R@1, the release's choice).
    select_by: str = "rsum"
    workers: int | None = None  # DataLoader workers (None: a default that works in notebooks)
    time_budget_s: float | None = None  # stop training after this many seconds (a safety net)

    def __post_init__(self) -> None:
        problems = check_fields(self)  # the comparisons below need numbers of the right kind
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))
        for name in ("epochs", "batch_size", "grad_accum", "checkpoint_every", "lr_step_epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "val_images"):  # 0 would mean no training / an empty validation, not "all"
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        for name in ("lr", "temperature", "global_temperature"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 0 <= self.seed < 2**32:  # torch's generators take the seed times 1,000,003 as an unsigned 64-bit number
            problems.append(f"seed must be in 0..{2**32 - 1}, got {self.seed}")
        if self.workers is not None and self.workers < 0:
            problems.append(f"workers must be >= 0 or None, got {self.workers}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))
        if self.select_by not in ("rsum", "r1_sum"):
            problems.append(f"select_by must be rsum or r1_sum, not {self.select_by!r}")
        if self.optimizer not in ("adam", "adamw"):
            problems.append(f"optimizer must be adam or adamw, not {self.optimizer!r}")
        if self.schedule not in ("step", "cosine", "constant"):
            problems.append(f"schedule must be step, cosine or constant, not {self.schedule!r}")
        losses = ("hardest", "all", "infonce")
        if self.negatives not in (*losses, "curriculum") or self.start_loss not in losses[1:] or self.end_loss not in losses:
            problems.append(f"negatives must be hardest, all, infonce or curriculum (start_loss all or infonce, end_loss "
                            f"any of {losses}), not {self.negatives!r} / {self.start_loss!r} / {self.end_loss!r}")
        if self.batch_by_family not in ("never", "always", "after_switch"):
            problems.append(f"batch_by_family must be never, always or after_switch, not {self.batch_by_family!r}")
        if self.text_train_layers < 0:
            problems.append(f"text_train_layers must be >= 0, got {self.text_train_layers}")
        if self.base_frames_until_accuracy is not None and not 0 < self.base_frames_until_accuracy <= 1:
            problems.append("base_frames_until_accuracy must be in (0, 1] or None, got "
                            f"{self.base_frames_until_accuracy}")
        if self.warmup_steps < 0 or self.cooldown_steps < 0:
            problems.append(f"warmup_steps and cooldown_steps must be >= 0, got {self.warmup_steps} and "
                            f"{self.cooldown_steps}")
        if self.val_every is not None and self.val_every < 1:
            problems.append(f"val_every must be a positive number of steps or None, got {self.val_every}")
        if self.batch_size < 2 or self.batch_size % self.grad_accum:
            problems.append(f"batch_size {self.batch_size} must be >= 2 and divisible by grad_accum {self.grad_accum}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    @classmethod
    def preset(cls, name: str, /, **overrides: Any) -> "TrainConfig":
        """``paper`` (the released recipe), ``colab`` (its two phases in one Colab runtime), ``demo`` (a few
        minutes on a CPU), ``notebook`` (the demo, validated every 100 steps) or ``gpu``, with fields replaced."""
        if name not in TRAIN_PRESETS:
            raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAIN_PRESETS)}")
        return dataclasses.replace(TRAIN_PRESETS[name], **overrides)

    def replace(self, **overrides: Any) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields."""
        return dataclasses.asdict(self)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of a run with ``steps_per_epoch`` steps an epoch: ``max_steps``, at most ``epochs`` epochs."""
        return min(self.max_steps or self.epochs * steps_per_epoch, self.epochs * steps_per_epoch)


TRAIN_PRESETS = {
    # The release's recipe (docs/method.md, "Deviations from the release"): Adam 1e-4, x0.1 every 10 epochs, batch
    # 58, the hardest negative; both backbones frozen (only the projections learn) until epoch index 10 ends, so
    # that they train at 1e-5 and then 1e-6 only; no gradient clipping; best/ by the sum of the two R@1.
    "paper": TrainConfig(freeze_backbone_epochs=11, grad_clip=None, select_by="r1_sum"),
    # The release's two phases shrunk to one Colab runtime (about 1-2 hours on a T4 or L4, estimated in notebook
    # 03): one epoch of Flickr30K with frozen backbones at 1e-4 (cheap: no backward through Swin and BERT), then
    # half an epoch with everything training at 1e-5. Micro-batches of 29 (grad_accum 2) keep the peak memory
    # inside a T4's 15 GB; each takes its hardest negatives from its own 29 pairs.
    "colab": TrainConfig(epochs=2, max_steps=3750, freeze_backbone_epochs=1, lr_step_epochs=1, grad_accum=2,
                         grad_clip=None, select_by="r1_sum", val_every=1250, val_images=1000, checkpoint_every=250),
    # `make demo`: the minilm preset, the six layers of its text encoder training (its embeddings frozen, no
    # dropout: they learn which words bind and what the relation says from the pairs), 400 steps of batches made
    # of whole families of hard negatives (a bit over half an epoch of the generated data), the rate cooled down
    # to zero over the last 150. A caption curriculum (from 2026-12-04, with the default data's captions in frames
    # whose word order does not give the roles away): the generator's ten base frames alone until the running
    # in-batch accuracy reaches 0.6 (the roles found), then every caption. The loss (from 2026-12-05): InfoNCE
    # until that accuracy passes 0.65, HAT's hardest negative after. On batches of whole families the accuracy
    # stays near 0.5 until the roles are found; switching to the hardest negative at 0.25, before them, left the
    # roles late or never found in some seeds (benchmarks/README.md, "InfoNCE until the roles are found").
    "demo": TrainConfig(epochs=1, max_steps=400, batch_size=64, lr=5e-4, optimizer="adamw", weight_decay=1e-4,
                        schedule="constant", warmup_steps=60, cooldown_steps=150, negatives="curriculum",
                        start_loss="infonce", switch_accuracy=0.65, freeze_text=True, text_train_layers=6,
                        global_loss_weight=0.5, val_images=200, batch_by_family="always", checkpoint_every=100,
                        base_frames_until_accuracy=0.6),
}
# Notebooks 02, 03 and 05 (the minilm model): the demo recipe, validated every 100 steps so that notebook 03
# draws a validation curve (four points, about 5 s each on 2 cores), without the generalisation splits in the log
# (18 s more per validation; notebook 03 scores them once, at the end, and `make demo` logs them).
TRAIN_PRESETS["notebook"] = dataclasses.replace(TRAIN_PRESETS["demo"], val_every=100, log_generalisation=False)
# The offline profile on a GPU (hat_min.tutorial.profiles): the demo recipe scaled to a GPU and to the larger generated
# dataset (40,000 training images): batches of 128 pairs (32 whole families), 1,500 steps (about 1.2 epochs),
# the whole 1,000-image validation split every 250 steps.
TRAIN_PRESETS["gpu"] = dataclasses.replace(TRAIN_PRESETS["demo"], max_steps=1500, batch_size=128, warmup_steps=100,
                                           cooldown_steps=400, val_images=None, val_every=250, checkpoint_every=250,
                                           epochs=2)

# The recipe a model preset brings when none is named (``python -m hat_min train --preset paper``).
DEFAULT_TRAIN_PRESET = {"paper": "paper", "minilm": "demo", "minilm_labelled": "demo", "tiny": "demo"}
