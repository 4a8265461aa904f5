"""Pretraining the offline image encoder: a small Swin that learns to see the generated scenes' objects.

HAT never starts from random weights: the paper fine-tunes a Swin-B pretrained on ImageNet-22k.
Offline there are no vision weights to download, so hat_min makes its own, the same way in
miniature: supervised pretraining on labels that cost nothing. The scene generator knows which
object lies under every 8x8-pixel patch (``data_prep.labels.patch_labels``: colour, shape,
texture, size and count of its group, or background), so the Swin learns dense attribute
recognition: every stage, through a small linear head per stage, predicts the labels of every
patch it covers (stage 3's 2x2 tokens each predict the 4x4 patches under them). The heads are
thrown away; HAT keeps the Swin (``HATConfig.image_weights``).

The pretraining scenes are drawn apart from the retrieval data: none of them is a scene of any
split of the default generated dataset (seed 0: 10,000 / 500 / 1,000 images), and none has a group
with a held-out attribute combination (``data_prep.captions.HELD_OUT_COMBINATIONS``: the
``test_unseen`` split's red stars, striped squares, ...), so that split measures combinations the
encoder was never shown.

    python -m hat_min.weights image                # writes hat_min/weights/scenes_swin.{safetensors,json}
    python -m hat_min.weights image --steps 300 --out /tmp/swin     # a quick look
    python -m hat_min.weights                      # both encoders (the text one: hat_min/weights/text.py)

The JSON card beside the weights records the data, the seed, the steps, the file's sha256 and
the accuracy on held-out scenes; ``tests/test_weights.py`` checks the hash and the accuracy.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import HATConfig
from ..encoders import WEIGHTS_DIR, cpu_has_native_bf16, read_weights, swin_features
from .cards import EXCLUDED, warmup_cosine, write_card

NAME = "scenes_swin"  # HATConfig.image_weights of the minilm preset
DEFAULT_OUT = WEIGHTS_DIR
HELD_OUT_SEED = 2  # scenes of the held-out check (the card's accuracy); the training scenes use --seed
CHECK_SCENES = 64  # the first held-out scenes, whose exact accuracy the card records for the tests


class DenseHeads(nn.Module):
    """One linear head per stage: stage tokens (B, h, w, C) -> logits (B, classes, g, g) on the label grid."""

    def __init__(self, channels: list[int], reductions: list[int], classes: list[int]):
        super().__init__()
        self.classes = classes
        self.factors = [r // reductions[0] for r in reductions]  # label cells per token side
        self.heads = nn.ModuleList(nn.Linear(c, f * f * sum(classes)) for c, f in zip(channels, self.factors))

    def forward(self, maps: list[Tensor]) -> list[list[Tensor]]:
        """Per stage, per label field: logits (B, n_classes, g, g)."""
        out = []
        for head, f, x in zip(self.heads, self.factors, maps):  # x: (B, h, w, C)
            logits = head(x).permute(0, 3, 1, 2)  # (B, f*f*K, h, w)
            logits = F.pixel_shuffle(logits, f) if f > 1 else logits  # (B, K, g, g)
            out.append(list(logits.split(self.classes, dim=1)))
        return out


def backbone_config() -> HATConfig:
    """The architecture that is pretrained: the ``minilm`` preset's Swin, from random weights."""
    return HATConfig.preset("minilm", image_weights=None)


def build(config: HATConfig) -> tuple[nn.Module, DenseHeads]:
    """A Swin with every stage as output, and the dense heads on top of it."""
    from data_prep.labels import LABEL_CLASSES, LABEL_FIELDS

    n_stages = len(config.swin_depths)
    swin = swin_features(config, out_indices=list(range(n_stages)))
    classes = [len(LABEL_CLASSES[f]) + 1 for f in LABEL_FIELDS]  # + background
    heads = DenseHeads(swin.feature_info.channels(), swin.feature_info.reduction(), classes)
    return swin, heads


def to_input(images: np.ndarray | Tensor, config: HATConfig) -> Tensor:
    """uint8 (B, S, S, 3) -> normalised float (B, 3, S, S)."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float().div_(255)
    mean, std = torch.tensor(config.image_mean)[:, None, None], torch.tensor(config.image_std)[:, None, None]
    return (x - mean) / std


def dense_loss(logits: list[list[Tensor]], labels: Tensor) -> Tensor:
    """Cross-entropy over every stage, field and label cell; labels (B, fields, g, g)."""
    total = 0.0
    for stage in logits:
        for field, field_logits in enumerate(stage):
            total = total + F.cross_entropy(field_logits.float(), labels[:, field])
    return total / len(logits)


@torch.no_grad()
def accuracy(swin: nn.Module, heads: DenseHeads, images: np.ndarray, labels: np.ndarray, config: HATConfig,
             batch: int = 256) -> dict[str, float]:
    """Per field, the share of object cells (not background) whose label the deepest stage predicts, and
    the share of background cells predicted as background ("background"), in percent."""
    from data_prep.labels import LABEL_FIELDS

    swin.eval()
    hits, counts = np.zeros(len(LABEL_FIELDS) + 1), np.zeros(len(LABEL_FIELDS) + 1)
    for i in range(0, len(images), batch):
        y = torch.as_tensor(labels[i : i + batch])  # (b, fields, g, g)
        preds = [f.argmax(1) for f in heads(swin(to_input(images[i : i + batch], config)))[-1]]  # deepest stage
        fg = y[:, 0] > 0
        for k, p in enumerate(preds):
            hits[k] += int(((p == y[:, k]) & fg).sum())
            counts[k] += int(fg.sum())
        hits[-1] += int(((preds[0] == 0) & ~fg).sum())
        counts[-1] += int((~fg).sum())
    names = [*LABEL_FIELDS, "background"]
    return {n: round(100.0 * h / max(c, 1), 2) for n, h, c in zip(names, hits, counts)}


def held_out(n: int, config: HATConfig, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The held-out scenes (seed ``HELD_OUT_SEED``), apart from the retrieval data."""
    from data_prep.labels import default_scene_keys, labelled_scenes

    grid = config.image_size // (config.swin_patch or 4)
    return labelled_scenes(n, HELD_OUT_SEED, config.image_size, grid, default_scene_keys(), progress)


def pretrain(out: str | Path = DEFAULT_OUT, steps: int = 4000, batch_size: int = 64, lr: float = 2e-3,
             n_images: int = 40_000, seed: int = 1, held_out_images: int = 2000, progress: bool = True) -> dict:
    """Pretrain the backbone on labelled scenes, write ``scenes_swin.safetensors`` and its JSON card; return the card."""
    from data_prep.labels import default_scene_keys, labelled_scenes

    started = time.monotonic()
    config = backbone_config()
    grid = config.image_size // (config.swin_patch or 4)
    exclude = default_scene_keys()
    images, labels = labelled_scenes(n_images, seed, config.image_size, grid, exclude, progress)
    torch.manual_seed(seed)
    swin, heads = build(config)
    params = [*swin.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    schedule = warmup_cosine(optimizer, steps, warmup=min(200, steps // 10))
    bf16 = cpu_has_native_bf16()
    g = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="pretraining the scenes Swin", unit="step", disable=not progress)
    for _ in bar:
        swin.train()
        rows = torch.randint(len(images), (batch_size,), generator=g)
        x, y = to_input(images[rows.numpy()], config), torch.as_tensor(labels[rows.numpy()])
        flip = torch.rand(batch_size, generator=g) < 0.5  # mirror images and their label grids together
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = dense_loss(heads(swin(x)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return save(out, swin, heads, config, {
        "data": {"generator": "data_prep.labels.labelled_scenes", "images": n_images, "seed": seed,
                 "held_out_seed": HELD_OUT_SEED,
                 "image_size": config.image_size, "label_grid": grid,
                 "excluded": EXCLUDED},
        "training": {"steps": steps, "batch_size": batch_size, "lr": lr, "optimizer": "adamw, weight decay 0.05",
                     "schedule": "warm-up then cosine", "hflip": True, "bf16": bf16,
                     "seconds": round(time.monotonic() - started, 1)},
    }, held_out_images)


def save(out: str | Path, swin: nn.Module, heads: DenseHeads, config: HATConfig, card: dict,
         held_out_images: int) -> dict:
    """Write the Swin and its heads (fp16) and the card, with the held-out accuracy of the saved weights."""
    state = {f"backbone.{k}": v for k, v in swin.state_dict().items()}
    state.update({f"heads.{k}": v for k, v in heads.state_dict().items()})
    card = {"name": NAME,
            "what": "Swin of the minilm preset, pretrained to name the object under every 8x8 patch of generated scenes",
            "architecture": {k: getattr(config, k) for k in ARCH_FIELDS}, **card}

    def measure(weights: Path, n: int) -> dict:
        swin2, heads2 = load(weights, config)
        images, labels = held_out(n, config)
        return accuracy(swin2, heads2, images, labels, config)

    return write_card(out, NAME, state, card, measure, held_out_images, CHECK_SCENES,
                      "python -m hat_min.weights image")


ARCH_FIELDS = ("image_model", "image_size", "swin_patch", "swin_embed_dim", "swin_depths", "swin_heads", "swin_window")


def load(weights: str | Path, config: HATConfig | None = None) -> tuple[nn.Module, DenseHeads]:
    """The pretrained Swin and its dense heads from a weights file (float32, eval mode)."""
    config = config or backbone_config()
    swin, heads = build(config)
    swin.load_state_dict(read_weights(str(weights), "backbone."))
    heads.load_state_dict(read_weights(str(weights), "heads."))
    return swin.eval(), heads.eval()
