"""The authors' own trained HAT models in hat_min: convert a checkpoint of their release into a hat_min folder.

The release (github LuminosityX/HAT, a fork of METER on PyTorch Lightning) offers its trained models for
Flickr30K and MSCOCO as Lightning files, linked from its README: a pickle holding ``state_dict`` (every tensor
under the release's names) and ``hyper_parameters`` (its sacred config, read here for the settings below).
``convert_release`` maps every tensor onto the ``paper`` preset's names and writes a normal
``save_pretrained`` folder (``model.safetensors`` + ``config.json``), which ``HAT.from_pretrained`` and
``python -m hat_min evaluate`` read like any other:

    python -m hat_min convert-release hat_f30k.ckpt --out runs/release_f30k --trust-pickle
    python -m hat_min evaluate --checkpoint runs/release_f30k --data data/f30k

Where each key group of the release goes (levels shallow to deep: (Swin stage 2, BERT layer 4), (3, 10), (4, 12)):

    vit_model.patch_embed.*, vit_model.layers.*   image_encoder.body.*     original Swin names, converted by timm's
        (the release's copy of Microsoft's Swin)                          own filter for such checkpoints (each
                                                                          stage's patch merging moves to the start
                                                                          of the next stage), then ``layers.N`` ->
                                                                          ``layers_N`` of the features_only model
    vit_model.norm_1 / norm_2 / norm              image_norms.0 / 1 / 2    LayerNorms of stages 2, 3, 4 (``norm`` is
                                                                          Swin's final one, as in hat_min's
                                                                          ``swin_final_norm``)
    cross_modal_image_transform_1 / _2 / (none)   image_proj.0 / 1 / 2     Linear 256 / 512 / 1024 -> 768
    cross_modal_text_transform_1 / _2 / (none)    text_proj.0 / 1 / 2      Linear 768 -> 768 on layers 4 / 10 / 12
    text_transformer.*                            text_encoder.bert.*      the release's older BERT code has the
                                                                          same names; old LayerNorm gamma / beta
                                                                          are renamed by transformers' own rules

Dropped on purpose (``DROPPED``, each with its reason): the Swin buffers ``relative_position_index`` and
``attn_mask`` (timm rebuilds them from the window and image size), BERT's pooler (the release computes it
and never uses it), the LayerNorm of a stage no level reads (``norm_0``: stage 1) and a Swin classifier head
(the release's Swin has none). Any other tensor of the file that is not used, or any tensor of the model
that the file does not fill, or a shape that differs, stops the conversion with one error listing them.

Settings: the saved config is the ``paper`` preset, with ``direction``, ``lambda_softmax``, ``max_text_len``,
``margin``, ``image_size`` and ``hidden_size`` (-> ``embed_dim``) taken from the file's hyper-parameters where
it has them (the release's defaults are the preset's: i2t, 9, 32, 0.2, 224, 768). Its test-time images
(Resize(256), CenterCrop(224), ImageNet mean / std) and captions (bert-base-uncased WordPiece, [CLS] + at most
30 tokens + [SEP], token type 0) are the preset's evaluation as they are.

Security: the file is a pickle, and unpickling can run code. It is read with ``torch.load(weights_only=True)``;
if that refuses because of the Python objects inside (a Lightning file holds Lightning's and sacred's classes),
the conversion stops with one sentence naming ``--trust-pickle``. Only with ``trust_pickle=True`` is it fully
unpickled; classes whose packages are not installed here (pytorch_lightning, sacred) are then rebuilt as plain
stand-ins, so that neither package is needed.

``release_state_dict`` is the mapping the other way (a hat_min model -> the release's exact key layout, buffers
and pooler included): it exists for the tests, which build a fake release file from a random model, and for
checking the mapping by hand.
"""
from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import HATConfig

PREFIXES = ("vit_model.", "text_transformer.", "cross_modal_")  # the release's three key groups
# The release's three levels, shallow to deep: the suffix of their projections (cross_modal_image_transform_1, ...).
LEVEL_SUFFIXES = ("_1", "_2", "")
STAGE_NORMS = {1: "norm_0", 2: "norm_1", 3: "norm_2", 4: "norm"}  # the release's LayerNorm of each Swin stage
# Tensors of the file that are deliberately not used: (pattern, why). Stage norms no level reads are added per config.
DROPPED = (
    (r"^vit_model\..*\.relative_position_index$", "Swin buffer: the relative-position index, rebuilt by timm"),
    (r"^vit_model\..*\.attn_mask$", "Swin buffer: the shifted-window mask, rebuilt by timm"),
    (r"^vit_model\.head\.", "Swin classifier head: unused by retrieval (the release's Swin has none)"),
    (r"^text_transformer\.pooler\.", "BERT pooler: the release computes it and never uses it"),
)
SETTINGS = {  # the release's config name -> HATConfig field, read from the file's hyper-parameters
    "direction": "direction", "lambda_softmax": "lambda_softmax", "max_text_len": "max_text_len",
    "margin": "margin", "image_size": "image_size", "hidden_size": "embed_dim",
}
TRUST_FLAG = "--trust-pickle"
REFUSALS = ("Unsupported global", "unrecognized function", "Unsupported class")  # torch's weights_only refusals


class ReleaseError(ValueError):
    """A file that cannot be converted: one sentence saying why."""


# ----------------------------------------------------------------------------- reading the file
def load_release(path: str | Path, trust_pickle: bool = False) -> dict:
    """The Lightning checkpoint at ``path`` as a dict, read with ``weights_only=True`` unless ``trust_pickle``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        if trust_pickle:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle())
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ReleaseError(_refusal(path, str(err))) from None
    except Exception as err:  # any failure to parse arbitrary bytes (IndexError, EOFError, RuntimeError, ...)
        reason = f"{type(err).__name__}: {_first_line(err)}"
        raise ReleaseError(f"{path} is not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(checkpoint, Mapping):
        raise ReleaseError(f"{path} holds a {type(checkpoint).__name__}, not a PyTorch Lightning checkpoint (a dict "
                           f"with a 'state_dict'), so it is not a file of the HAT release")
    return dict(checkpoint)


def _refusal(path: Path, message: str) -> str:
    """The sentence for a file that ``weights_only=True`` refuses, or for one that is not a checkpoint at all."""
    if not any(word in message for word in REFUSALS):
        reason = _first_line(message.split("WeightsUnpickler error:")[-1])  # torch's own words, after its advice
        return f"{path} is not a readable PyTorch checkpoint ({reason})"
    found = re.search(r"GLOBAL ([\w.]+)", message)
    what = f" such as {found.group(1)}" if found else ""
    return (f"{path} holds pickled Python objects{what} that torch.load(weights_only=True) refuses to rebuild, "
            f"because unpickling them can run arbitrary code; if you trust the file (e.g. the authors' checkpoint "
            f"from their README's link), convert it with {TRUST_FLAG} (trust_pickle=True)")


def _first_line(err: object) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


class _StandIn(dict):
    """An object whose class is not installed here (pytorch_lightning, sacred): keeps what the pickle gives it."""

    def __init__(self, *args, **kwargs):  # not called when the pickle rebuilds it with NEWOBJ
        super().__init__()
        self.args = args
        if len(args) == 1 and isinstance(args[0], Mapping):  # a dict-like container rebuilt from a dict
            self.update(args[0])
        self.update(kwargs)

    def __setstate__(self, state) -> None:
        self.state = state

    def append(self, item) -> None:  # a list-like container rebuilt item by item: its items kept in ``items_``
        self.__dict__.setdefault("items_", []).append(item)

    def extend(self, items) -> None:
        self.__dict__.setdefault("items_", []).extend(items)


class _TolerantUnpickler(pickle.Unpickler):
    """A full unpickler (``trust_pickle``) that rebuilds a class it cannot import as a ``_StandIn`` of that name."""

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _stand_in(module, name)


_STAND_INS: dict[tuple[str, str], type] = {}


def _stand_in(module: str, name: str) -> type:
    """One ``_StandIn`` subclass per missing class (so that a class used as a dict key stays one key)."""
    key = (module, name)
    if key not in _STAND_INS:
        _STAND_INS[key] = type(name, (_StandIn,), {"__module__": module, "__qualname__": name})
    return _STAND_INS[key]


def _tolerant_pickle() -> types.ModuleType:
    """A pickle module for ``torch.load(pickle_module=...)`` whose unpickler tolerates missing classes."""
    module = types.ModuleType("hat_min_tolerant_pickle")
    module.Unpickler = _TolerantUnpickler
    module.load = lambda file, **kwargs: _TolerantUnpickler(file, **kwargs).load()
    return module


def release_tensors(checkpoint: dict, path: str | Path = "the checkpoint") -> dict[str, Tensor]:
    """The ``state_dict`` of a release checkpoint, checked to be the release's layout (one sentence if not)."""
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        held = ", ".join(map(str, list(checkpoint)[:6])) or "nothing"
        raise ReleaseError(f"{path} has no 'state_dict' (it holds {held}), so it is not a PyTorch Lightning "
                           f"checkpoint of the HAT release")
    absent = [prefix for prefix in PREFIXES if not any(str(k).startswith(prefix) for k in state)]
    if absent:
        found = sorted({str(k).split(".")[0] for k in state})[:6]
        raise ReleaseError(f"{path} is not a checkpoint of the HAT release: its state_dict has no tensors under "
                           f"{', '.join(p + '*' for p in absent)} (its key groups: {', '.join(found) or 'none'})")
    return {str(k): v for k, v in state.items() if isinstance(v, Tensor)}


def release_settings(checkpoint: dict) -> dict:
    """HATConfig fields set by the file's hyper-parameters (``SETTINGS``): {} when it has none."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        return {}
    config = hparams.get("config", hparams)  # the release saves its sacred config under "config"
    if not isinstance(config, Mapping):
        return {}
    settings = {field: config[name] for name, field in SETTINGS.items() if name in config}
    if "lambda_softmax" in settings and isinstance(settings["lambda_softmax"], (int, float)):
        settings["lambda_softmax"] = float(settings["lambda_softmax"])  # the release writes 9
    return settings


def release_config(checkpoint: dict, config: HATConfig | None = None) -> HATConfig:
    """The config the file converts to: ``config`` (default the ``paper`` preset) with the file's settings."""
    base = config if config is not None else HATConfig.preset("paper")
    settings = release_settings(checkpoint)
    try:
        return base.replace(**settings)
    except (TypeError, ValueError) as err:
        raise ReleaseError(f"the checkpoint's settings {settings} are not a model hat_min runs ({err})") from None


# ----------------------------------------------------------------------------- release names -> hat_min names
def hat_state_dict(release: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The release's tensors under ``model``'s names, and the release keys dropped {key: why}; one ReleaseError
    listing the missing, unexpected and misshapen tensors if they do not fit exactly."""
    config = model.config
    dropped = {k: why for k in release if (why := _drop_reason(k, config)) is not None}
    kept = {k: v for k, v in release.items() if k not in dropped}
    plan = {**_swin_plan(kept, model.image_encoder.body), **_norm_plan(config), **_projection_plan(config),
            **_bert_plan(kept)}  # {hat_min name: release name}
    own = model.state_dict()
    _check(plan, kept, own)
    return {target: kept[plan[target]].to(own[target].dtype) for target in own}, dropped


def _drop_reason(key: str, config: HATConfig) -> str | None:
    """Why a release key is deliberately not used (``DROPPED``, or a stage norm no level reads), else None."""
    unused = [STAGE_NORMS[s] for s in STAGE_NORMS if s not in {stage for stage, _ in config.levels}]
    rules = [*DROPPED, *((rf"^vit_model\.{name}\.", "LayerNorm of a Swin stage that feeds no level")
                         for name in unused)]
    return next((why for pattern, why in rules if re.search(pattern, key)), None)


def _swin_plan(release: dict[str, Tensor], body: nn.Module) -> dict[str, str]:
    """``image_encoder.body.*`` <- ``vit_model.*``: timm's conversion of original Swin names, then features_only's."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    norms = {f"{name}.{p}" for name in STAGE_NORMS.values() for p in ("weight", "bias")}
    swin = {k.removeprefix("vit_model."): v for k, v in release.items()
            if k.startswith("vit_model.") and k.removeprefix("vit_model.") not in norms}
    view = _timm_view(body)
    # timm looks up the attention module of each relative-position table; one this model lacks stays unmapped
    readable = {k: v for k, v in swin.items()
                if not k.endswith(".relative_position_bias_table") or _has_module(view, k.rsplit(".", 1)[0])}
    source = {id(v): k for k, v in readable.items()}
    converted = checkpoint_filter_fn(dict(readable), view)
    # a tensor timm resampled (another window or patch size) is matched by name: its file shape is then compared
    return {f"image_encoder.body.{_features_name(k)}": f"vit_model.{source.get(id(v), k)}"
            for k, v in converted.items()}


def _timm_view(body: nn.Module) -> nn.Module:
    """The features_only Swin under the full model's names (``layers.N``), sharing its modules: what timm reads."""
    view = nn.Module()
    view.patch_embed = body.patch_embed
    view.layers = nn.ModuleList(getattr(body, f"layers_{i}") for i in range(_n_stages(body)))
    return view


def _n_stages(body: nn.Module) -> int:
    """Swin stages the features_only model keeps (``layers_0`` ... ``layers_{n-1}``)."""
    return sum(1 for name, _ in body.named_children() if re.fullmatch(r"layers_\d+", name))


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _features_name(name: str) -> str:
    """A full timm Swin name as in the features_only model: ``layers.2.blocks...`` -> ``layers_2.blocks...``."""
    return re.sub(r"^layers\.(\d+)\.", r"layers_\1.", name)


def _norm_plan(config: HATConfig) -> dict[str, str]:
    """``image_norms.l`` <- the release's LayerNorm of level l's Swin stage (``STAGE_NORMS``)."""
    return {f"image_norms.{level}.{p}": f"vit_model.{STAGE_NORMS[stage]}.{p}"
            for level, (stage, _) in enumerate(config.levels) for p in ("weight", "bias")}


def _projection_plan(config: HATConfig) -> dict[str, str]:
    """``image_proj.l`` / ``text_proj.l`` <- ``cross_modal_{image,text}_transform{_1, _2, (none)}``."""
    _check_three_levels(config)
    return {f"{side}_proj.{level}.{p}": f"cross_modal_{side}_transform{suffix}.{p}"
            for side in ("image", "text") for level, suffix in enumerate(LEVEL_SUFFIXES) for p in ("weight", "bias")}


def _check_three_levels(config: HATConfig) -> None:
    if len(config.levels) != len(LEVEL_SUFFIXES):
        raise ReleaseError(f"the release has {len(LEVEL_SUFFIXES)} levels (Swin stages 2, 3, 4 with BERT layers 4, "
                           f"10, 12), but the config has {len(config.levels)}: {config.levels}")


def _bert_plan(release: dict[str, Tensor]) -> dict[str, str]:
    """``text_encoder.bert.*`` <- ``text_transformer.*``, old names renamed as transformers renames them."""
    rename = _transformers_renaming()
    return {f"text_encoder.bert.{rename(k.removeprefix('text_transformer.'))}": k
            for k in release if k.startswith("text_transformer.")}


def _transformers_renaming():
    """transformers' own renaming of old checkpoint names (``LayerNorm.gamma`` -> ``LayerNorm.weight``, ...)."""
    try:  # transformers >= 5: the "legacy" renamings applied to every model it loads
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # transformers 4.x: PreTrainedModel's key fix-up
        from transformers import PreTrainedModel

        fix = getattr(PreTrainedModel, "_fix_state_dict_key_on_load", None)
        return (lambda name: fix(name)[0]) if fix is not None else (lambda name: name)
    renamings = get_checkpoint_conversion_mapping("legacy") or []

    def rename(name: str) -> str:
        for renaming in renamings:
            name = renaming.rename_source_key(name)[0]
        return name
    return rename


def _check(plan: dict[str, str], release: dict[str, Tensor], own: dict[str, Tensor]) -> None:
    """Every tensor of the model filled, every kept tensor of the file used, shapes equal: else one ReleaseError."""
    missing = [k for k in own if plan.get(k) not in release]
    used = {plan[k] for k in own if k in plan}
    unexpected = [k for k in release if k not in used]
    shapes = [f"{plan[k]} {tuple(release[plan[k]].shape)} -> {k} {tuple(own[k].shape)}"
              for k in own if plan.get(k) in release and release[plan[k]].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ReleaseError(f"the checkpoint's tensors do not fit the model: missing (model tensors the file does not "
                           f"fill) {_listing(missing)}; unexpected (file tensors neither used nor in DROPPED) "
                           f"{_listing(unexpected)}; of another shape {_listing(shapes)}")


def _listing(names: list[str], most: int = 12) -> str:
    """``(2): a, b`` / ``(0): none``, at most ``most`` names then how many more."""
    shown = ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
    return f"({len(names)}): {shown or 'none'}"


# ----------------------------------------------------------------------------- converting
def convert_release(checkpoint: str | Path, out: str | Path, *, trust_pickle: bool = False,
                    config: HATConfig | None = None) -> Path:
    """Convert the release checkpoint at ``checkpoint`` into a ``save_pretrained`` folder ``out``; returns ``out``."""
    return _convert(checkpoint, out, trust_pickle, config)[0]


def _convert(checkpoint: str | Path, out: str | Path, trust_pickle: bool, config: HATConfig | None):
    """``convert_release``, also returning what the command line reports: tensors, dropped keys, settings."""
    from ..encoders import OfflineError, check_available, hub_downloads
    from ..model import HAT

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"--out {out} is a file; give a folder (it gets model.safetensors and config.json)")
    shape = (config or HATConfig.preset("paper")).replace(image_pretrained=False)
    try:
        check_available(shape)  # before a large read
    except OfflineError:
        raise OfflineError(f"convert-release builds the paper architecture, which needs {', '.join(hub_downloads(shape))} "
                           f"from the Hugging Face Hub (the weights themselves come from the checkpoint), and the hub "
                           f"cannot be reached from here: convert once where it answers (the files are cached "
                           f"afterwards), or give --config a config whose text_model is a local BERT folder") from None
    file = load_release(checkpoint, trust_pickle)
    release = release_tensors(file, checkpoint)
    target = release_config(file, config)
    model = HAT(target.replace(image_pretrained=False))  # the weights come from the file: no Swin download
    tensors, dropped = hat_state_dict(release, model)
    model.load_state_dict(tensors)
    model.config = target
    model.save_pretrained(out)
    reasons = list(dropped.values())
    return out, {"tensors": len(tensors), "dropped": {why: reasons.count(why) for why in dict.fromkeys(reasons)},
                 "settings": release_settings(file)}


def release_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """A hat_min model of the paper architecture as the release's ``state_dict``, in its exact key layout (original
    Swin names and buffers, the unused stage norm and BERT pooler included). For tests and for checking the
    mapping: ``hat_state_dict(release_state_dict(model), model)`` gives back ``model.state_dict()``."""
    config = model.config
    _check_three_levels(config)
    state = {**_release_swin(model.image_encoder.body), **_release_norms(model)}
    for side in ("image", "text"):
        for level, suffix in enumerate(LEVEL_SUFFIXES):
            proj = getattr(model, f"{side}_proj")[level]
            state[f"cross_modal_{side}_transform{suffix}.weight"] = proj.weight.detach().clone()  # (768, C_in)
            state[f"cross_modal_{side}_transform{suffix}.bias"] = proj.bias.detach().clone()
    bert = model.text_encoder.bert
    state.update({f"text_transformer.{k}": v.detach().clone() for k, v in bert.state_dict().items()})
    width = bert.config.hidden_size  # hat_min keeps no pooler: zeros of its shape, as the file has one
    state.update({"text_transformer.pooler.dense.weight": torch.zeros(width, width),
                  "text_transformer.pooler.dense.bias": torch.zeros(width)})
    return state


def _release_swin(body: nn.Module) -> dict[str, Tensor]:
    """The Swin under original names: ``layers_N`` -> ``layers.N``, patch merging back to the end of the stage
    before (the inverse of timm's conversion), plus the buffers the original code saves with the weights."""
    state = {}
    for name, tensor in body.state_dict().items():
        name = re.sub(r"^layers_(\d+)\.", r"layers.\1.", name)
        name = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", name)
        state[f"vit_model.{name}"] = tensor.detach().clone()
    for i in range(_n_stages(body)):
        for j, block in enumerate(getattr(body, f"layers_{i}").blocks):
            prefix = f"vit_model.layers.{i}.blocks.{j}"
            state[f"{prefix}.attn.relative_position_index"] = block.attn.relative_position_index.clone()  # (N, N)
            if block.attn_mask is not None:  # shifted windows only: (windows, N, N)
                state[f"{prefix}.attn_mask"] = block.attn_mask.clone()
    return state


def _release_norms(model: nn.Module) -> dict[str, Tensor]:
    """The release's four stage LayerNorms: the levels' own, and a fresh one (ones, zeros) for a stage none reads."""
    body, state = model.image_encoder.body, {}
    levels = {stage: level for level, (stage, _) in enumerate(model.config.levels)}
    for stage, name in STAGE_NORMS.items():
        if stage in levels:
            norm = model.image_norms[levels[stage]]
            weight, bias = norm.weight.detach().clone(), norm.bias.detach().clone()
        else:
            width = getattr(body, f"layers_{stage - 1}").blocks[0].norm1.weight.shape[0]  # C of that stage
            weight, bias = torch.ones(width), torch.zeros(width)
        state[f"vit_model.{name}.weight"], state[f"vit_model.{name}.bias"] = weight, bias
    return state


# ----------------------------------------------------------------------------- command line
def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Add ``convert-release`` to ``python -m hat_min``'s subcommands."""
    p = subparsers.add_parser("convert-release", help="convert a checkpoint of the authors' release (LuminosityX/HAT) "
                                                      "into a hat_min folder")
    p.add_argument("checkpoint", help="the release's PyTorch Lightning file (Flickr30K or MSCOCO, from its README)")
    p.add_argument("--out", required=True, help="folder to write model.safetensors and config.json into")
    p.add_argument(TRUST_FLAG, action="store_true",
                   help="fully unpickle the file (it can run code): only for a file you trust; without it the file "
                        "is read with torch.load(weights_only=True), which refuses Lightning's own objects")
    p.add_argument("--config", default=None, metavar="JSON",
                   help="the HATConfig (a config.json) to convert to (default: the paper preset)")
    p.set_defaults(func=cmd_convert_release)
    return p


def cmd_convert_release(args) -> Path:
    """Run ``convert-release``: convert, then print one line and a JSON summary."""
    config = None
    if args.config is not None:
        from ..model import read_json

        try:
            config = HATConfig.from_dict(read_json(Path(args.config)))
        except TypeError as err:
            raise ValueError(f"{args.config} is not a HATConfig: {err}") from None
    out, report = _convert(args.checkpoint, args.out, args.trust_pickle, config)
    print(f"converted {args.checkpoint} into {out} ({report['tensors']} tensors; {sum(report['dropped'].values())} "
          f"of the file's dropped on purpose); evaluate it with: python -m hat_min evaluate --checkpoint {out} "
          f"--data DATA")
    print(json.dumps({"out": str(out), **report}))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m hat_min.weights.release CHECKPOINT --out DIR``: the same command on its own."""
    from ..encoders import OfflineError

    parser = argparse.ArgumentParser(prog="python -m hat_min.weights.release", description=__doc__.split("\n")[0])
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert-release", *(sys.argv[1:] if argv is None else argv)])
    try:
        args.func(args)
    except (OfflineError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
