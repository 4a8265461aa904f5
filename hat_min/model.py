"""HAT: Swin and BERT token features aligned at several depths by stacked cross-attention, and its objective.

Level l pairs Swin stage ``levels[l][0]`` with BERT layer ``levels[l][1]``. Each side of each
level has its own linear projection to the shared width D (image tokens pass a LayerNorm of
their own first); no L2 normalisation before the alignment. The score of an (image, caption)
pair is the weighted sum over levels of the SCAN score (``hat_min.scan``); training minimises
``HAT.objective``, the one place that says which loss and which negatives.

    model = HAT(HATConfig.preset("tiny"))
    scores, loss = model(images, input_ids, attention_mask)   # (B,3,S,S), (B,W), (B,W) -> (B, B), scalar
    img = model.encode_image(images)                           # L tensors (N_img, R_l, D)
    txt = model.encode_text(input_ids, attention_mask)         # L tensors (N_cap, W, D)
    sims = model.score(img, txt, attention_mask)               # (N_img, N_cap)

Encoding and scoring are separate so that evaluation encodes every image and caption once.
A trained model is a folder of two files, readable without pickle and without this repo:
``model.safetensors`` (weights) and ``config.json`` (the HATConfig).

    model.save_pretrained("runs/demo/best")
    model = HAT.from_pretrained("runs/demo/best")
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import HATConfig
from .encoders import BertLayers, SwinStages, check_available, swin_final_norm
from .loss import contrastive_loss, hinge_triplet_loss
from .scan import hierarchical_score

NEGATIVES = ("hardest", "all", "infonce")  # HAT.objective: the hardest negative (HAT's), all of them, or InfoNCE
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


SINCOS_NORM = 5.0  # norm of each region's sin-cos start vector: about half a projected image token's at the start


def sincos_positions(n_regions: int, dim: int, norm: float = SINCOS_NORM) -> Tensor:
    """A 2-D sin-cos code of a square grid of ``n_regions`` (row-major, as Swin's tokens) -> (n_regions, dim).

    Row y and column x in [0, 1] (cell centres); dim/4 frequencies 2 pi k / (dim/4), k = 1..dim/4, each for
    sin y, cos y, sin x and cos x; every row scaled to ``norm``. Neighbouring regions get similar vectors,
    distant ones different: a position the attention can read from the first step.
    """
    side = round(n_regions ** 0.5)
    if side * side != n_regions or dim % 4:
        raise ValueError(f"a sin-cos position code needs a square grid and a width divisible by 4, "
                         f"got {n_regions} regions and width {dim}")
    quarter = dim // 4
    coords = (torch.arange(side, dtype=torch.float64) + 0.5) / side  # (G,) cell centres in [0, 1]
    freqs = 2 * torch.pi * torch.arange(1, quarter + 1, dtype=torch.float64) / quarter  # (dim/4,)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each
    ay, ax = ys.reshape(-1, 1) * freqs, xs.reshape(-1, 1) * freqs  # (R, dim/4)
    code = torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)  # (R, dim)
    return (code / code.norm(dim=1, keepdim=True) * norm).float()


class HAT(nn.Module):
    """Hierarchical Alignment Transformer for image-text retrieval."""

    def __init__(self, config: HATConfig):
        super().__init__()
        check_available(config)  # fail in one sentence before building anything
        self.config = config
        stages = [stage for stage, _ in config.levels]
        layers = [layer for _, layer in config.levels]
        self.image_encoder = SwinStages(config, stages)
        self.text_encoder = BertLayers(config, layers)
        channels = [self.image_encoder.channels[s] for s in stages]
        self.image_norms = nn.ModuleList(nn.LayerNorm(c) for c in channels)
        self.image_proj = nn.ModuleList(nn.Linear(c, config.embed_dim) for c in channels)
        self.text_proj = nn.ModuleList(nn.Linear(self.text_encoder.width, config.embed_dim) for _ in layers)
        if config.proj_init_std is not None:  # the release's initialisation: N(0, std), zero bias
            for proj in (*self.image_proj, *self.text_proj):
                nn.init.normal_(proj.weight, std=config.proj_init_std)
                nn.init.zeros_(proj.bias)
        if config.swin_final_norm and max(stages) == self.image_encoder.n_stages:  # the release's stage-4 norm
            self.image_norms[stages.index(max(stages))].load_state_dict(swin_final_norm(config))
        if config.region_position:  # one learned (R_l, D) table per level: where each region lies
            regions = self.image_encoder.regions(config.image_size)
            self.region_pos = nn.ParameterList(
                nn.Parameter(sincos_positions(regions[s], config.embed_dim) if config.region_position_init == "sincos"
                             else torch.randn(regions[s], config.embed_dim) * 0.02) for s in stages)

    def encode_image(self, images: Tensor) -> list[Tensor]:
        """Per-level image tokens: (B, 3, S, S) -> L tensors (B, R_l, D)."""
        stages = self.image_encoder(images)  # {stage: (B, R, C)}
        feats = [proj(norm(stages[stage]))  # (B, R_l, D)
                 for (stage, _), norm, proj in zip(self.config.levels, self.image_norms, self.image_proj)]
        if self.config.region_position:
            feats = [f + pos for f, pos in zip(feats, self.region_pos)]  # (B, R_l, D) + (R_l, D)
        return feats

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> list[Tensor]:
        """Per-level word tokens: (B, W) ids and mask -> L tensors (B, W, D); padding is masked later."""
        layers = self.text_encoder(input_ids, attention_mask)  # {layer: (B, W, H)}
        return [proj(layers[layer]) for (_, layer), proj in zip(self.config.levels, self.text_proj)]

    def score(self, image_feats: list[Tensor], text_feats: list[Tensor], attention_mask: Tensor,
              chunk_size: int = 1024, pairs: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """HAT's similarity of every image with every caption -> (N_img, N_cap); of ``pairs`` only -> (P,)."""
        cfg = self.config
        return hierarchical_score(image_feats, text_feats, attention_mask, cfg.weights, cfg.direction,
                                  cfg.lambda_softmax, cfg.scan_implementation, chunk_size, pairs)

    def objective(self, image_feats: list[Tensor], text_feats: list[Tensor], attention_mask: Tensor,
                  image_ids: Tensor | None = None, negatives: str = "hardest", temperature: float = 0.1,
                  pooled_weight: float = 0.0, pooled_temperature: float = 0.05) -> tuple[Tensor, Tensor]:
        """The training loss of a batch of matching pairs (image b, caption b): -> scores (B, B), loss ().

        ``negatives``: "hardest" (HAT's: the VSE++ hinge on the hardest negative, margin ``config.margin``),
        "all" (the hinge summed over every negative) or "infonce" (cross-entropy at ``temperature``: a
        gentler start for random weights). ``pooled_weight`` > 0 adds InfoNCE on the pooled embeddings
        (``pooled_embedding``), which trains the first stage of two-stage retrieval; not in the paper.
        ``image_ids`` (B,) keeps two captions of one image from being each other's negatives.
        """
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}")
        scores = self.score(image_feats, text_feats, attention_mask)  # (B, B)
        with torch.autocast(scores.device.type, enabled=False):  # the losses in float32, also under mixed precision
            if negatives == "infonce":
                loss = contrastive_loss(scores.float(), temperature, image_ids)
            else:
                loss = hinge_triplet_loss(scores.float(), self.config.margin, negatives == "hardest", image_ids)
            if pooled_weight > 0:
                cosines = pooled_embedding(image_feats) @ pooled_embedding(text_feats, attention_mask).T  # (B, B)
                loss = loss + pooled_weight * contrastive_loss(cosines, pooled_temperature, image_ids)
        return scores, loss

    def forward(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor, image_ids: Tensor | None = None,
                gather: Callable | None = None, **objective) -> tuple[Tensor, Tensor]:
        """Encode a batch of matching pairs and return ``objective``'s (scores (B, B), loss).

        ``gather(image_feats, text_feats, attention_mask, image_ids)`` (several processes:
        ``hat_min.training.distributed.gather_batch``) returns every process's features, so that the
        negatives come from the whole global batch; ``objective`` passes on ``negatives``, ``temperature``...
        """
        batch = self.encode_image(images), self.encode_text(input_ids, attention_mask), attention_mask, image_ids
        return self.objective(*(gather(*batch) if gather is not None else batch), **objective)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``, each atomically."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
        text = json.dumps(self.config.to_dict(), indent=2)
        atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: HATConfig | None = None,
                        allow_missing: bool = False) -> "HAT":
        """Load a model saved by ``save_pretrained``; with ``config``, first check that it matches.

        A truncated or corrupt ``config.json`` or ``model.safetensors`` is a ``ValueError`` naming the file, and so
        is a ``config.json`` without every HATConfig field (today's defaults need not be the settings the model
        was trained with): ``allow_missing=True`` fills them, saying which (``upgrade_config`` rewrites the file).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        saved = saved_config(directory, allow_missing)
        if config is not None and config != saved:
            fields = ", ".join(f"{k} (checkpoint {a!r}, expected {b!r})" for k, (a, b) in saved.diff(config).items())
            raise ValueError(f"the checkpoint in {directory} was made with a different config: {fields}")
        model = cls(saved.replace(image_pretrained=False) if saved.image_pretrained else saved)  # no download
        model.config = saved
        try:
            weights = load_file(str(directory / WEIGHTS_NAME))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{directory / WEIGHTS_NAME} is truncated or corrupt ({err}); save or copy it again") from None
        _check_tensors(directory / WEIGHTS_NAME, weights, model.state_dict())
        model.load_state_dict(weights)
        return model


def saved_config(directory: Path, allow_missing: bool = False) -> HATConfig:
    """The HATConfig in a ``save_pretrained`` folder; missing fields are a ValueError naming them, or (with
    ``allow_missing``) get today's defaults, named on stderr."""
    path = Path(directory) / CONFIG_NAME
    if not (Path(directory) / WEIGHTS_NAME).is_file() or not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {WEIGHTS_NAME} + {CONFIG_NAME} (a save_pretrained folder)")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not a HATConfig object")
    missing = [f.name for f in dataclasses.fields(HATConfig) if f.name not in data]
    if missing and not allow_missing:
        raise ValueError(f"{path} lacks the HATConfig fields {', '.join(missing)} (written by an older hat_min?); "
                         f"today's defaults may not be what it trained with: check them and upgrade the file with "
                         f"`python -m hat_min upgrade --checkpoint {directory}` (or load with allow_missing=True)")
    try:
        saved = HATConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid HATConfig: {err}") from None
    if missing:
        filled = ", ".join(f"{name}={getattr(saved, name)!r}" for name in missing)
        print(f"{path}: missing fields given today's defaults: {filled}", file=sys.stderr)
    return saved


def upgrade_config(directory: str | Path) -> list[str]:
    """Rewrite an older checkpoint's ``config.json`` with every HATConfig field, the missing ones at today's
    defaults (named on stderr); returns their names (none: the file is left as it is)."""
    path = Path(directory) / CONFIG_NAME
    saved = saved_config(directory, allow_missing=True)
    missing = [name for name in saved.to_dict() if name not in read_json(path)]
    if missing:
        text = json.dumps(saved.to_dict(), indent=2)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return missing


def _check_tensors(path: Path, weights: dict[str, Tensor], own: dict[str, Tensor]) -> None:
    """The tensors of a weights file must be the model's, each of its shape: else one ValueError naming them."""
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} (model {tuple(own[k].shape)})" for k in own
              if k in weights and weights[k].shape != own[k].shape]
    problems = [f"{what}: {', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''}"
                for what, names in (("missing", missing), ("unknown", extra), ("of another shape", shapes)) if names]
    if problems:
        raise ValueError(f"{path} does not fit the model of its config.json ({'; '.join(problems)}); "
                         f"it was written for another model, or damaged: save or copy the checkpoint again")


def pooled_embedding(levels: Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
    """One unit vector per item: each level's mean token (real words only), normalised, summed over levels and
    normalised again: L x (N, T_l, D) (and an optional (N, T) mask) -> (N, D). A dual encoder's view of HAT."""
    if not levels:
        raise ValueError("pooled_embedding needs at least one level")
    if mask is not None and (mask.dim() != 2 or mask.shape[0] != levels[0].shape[0]):
        raise ValueError(f"mask must be (N, T) with N = {levels[0].shape[0]}, got {tuple(mask.shape)}")
    total = 0.0
    for feats in levels:  # (N, T, D)
        feats = feats.float()
        if mask is None:
            mean = feats.mean(dim=1)  # (N, D)
        else:
            m = mask[:, : feats.shape[1]].to(feats.dtype)[..., None]  # (N, T, 1)
            mean = (feats.masked_fill(m == 0, 0.0) * m).sum(1) / m.sum(1).clamp_min(1.0)  # padding may hold NaN
        total = total + F.normalize(mean, dim=-1)
    return F.normalize(total, dim=-1)


def read_json(path: Path):
    """A JSON file's content, or a ValueError naming the file when it is not JSON (truncated or corrupt)."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): the file is truncated or corrupt") from None


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place: a crash or a
    full disk while writing leaves the previous file untouched."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 (safetensors' too) would keep a shared run folder's group out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's umask (the modes plain ``open`` and ``mkdir`` give: 0644 / 0755 under umask 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
