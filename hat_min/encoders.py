"""The two backbones of HAT, reduced to "give me the tokens of these depths".

- ``SwinStages``: a timm Swin Transformer; the output of each requested stage (1-based, taken
  before the next stage's patch merging) as a token sequence (B, H*W, C).
- ``BertLayers``: a transformers BERT; the output of each requested layer (1-based, i.e.
  ``hidden_states[l]``) as (B, W, H). Layers above the deepest one requested are dropped.

    swin = SwinStages(cfg, stages=(2, 3, 4)); feats = swin(images)       # {2: (B, 784, 256), ...}
    bert = BertLayers(cfg, layers=(4, 10, 12)); hid = bert(ids, mask)    # {4: (B, W, 768), ...}
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from . import pretrained
from .config import HATConfig


class SwinStages(nn.Module):
    """Token sequences of selected Swin stages: images (B, 3, S, S) -> {stage: (B, R_stage, C_stage)}."""

    def __init__(self, config: HATConfig, stages: Sequence[int]):
        super().__init__()
        self.stages = sorted(set(stages))
        self.body = pretrained.load_image_encoder(config, out_indices=[s - 1 for s in self.stages])
        self.channels = dict(zip(self.stages, self.body.feature_info.channels()))
        self.n_stages = len(config.swin_depths) if config.swin_depths is not None else 4  # Swin's stages in all

    def regions(self, image_size: int) -> dict[int, int]:
        """Tokens of each stage for square images of ``image_size`` pixels: {stage: R}."""
        reductions = dict(zip(self.stages, self.body.feature_info.reduction()))
        return {stage: (image_size // reductions[stage]) ** 2 for stage in self.stages}

    def forward(self, images: Tensor) -> dict[int, Tensor]:
        maps = self.body(images)  # list of (B, H, W, C): timm's Swin features are channels-last
        return {stage: m.flatten(1, 2) for stage, m in zip(self.stages, maps)}  # (B, H*W, C)


class BertLayers(nn.Module):
    """Hidden states of selected BERT layers: (input_ids, attention_mask) (B, W) -> {layer: (B, W, H)}."""

    def __init__(self, config: HATConfig, layers: Sequence[int]):
        super().__init__()
        self.layers = sorted(set(layers))
        self.bert = pretrained.load_text_encoder(config)
        n_layers = self.bert.config.num_hidden_layers
        if self.layers[-1] > n_layers:
            raise ValueError(f"levels ask for BERT layer {self.layers[-1]} but "
                             f"{config.text_model!r} has {n_layers} layers")
        self.bert.encoder.layer = self.bert.encoder.layer[: self.layers[-1]]  # deeper layers are unused
        self.width = self.bert.config.hidden_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> dict[int, Tensor]:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return {layer: out.hidden_states[layer] for layer in self.layers}  # each (B, W, H)
