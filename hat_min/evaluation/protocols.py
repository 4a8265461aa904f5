"""Evaluation: encode a split once, score it in blocks, and report Recall@K under the paper's protocols.

Paper: Bin et al. 2023, evaluation protocol (see docs/method.md, section 7 "Evaluation").

1. ``encode``: every image once and every caption once (captions in length-sorted batches, each
   cut to its longest caption), keeping the per-level token features of the whole split:
   fp16 on a GPU (in GPU memory when they fit in half of what is free, else in host memory) and
   float32 on a CPU, where fp16 scored no faster (the fast scoring computes in float32 after
   the matmuls) and would cost accuracy. Caption features are stored in the
   original caption order, padded to the split's longest caption W with a mask;
   the blocked scoring cuts each block of captions to its longest one, so padding costs memory
   only, never compute.
2. ``similarity``: per block of images, HAT's score (``hat_min.scan.hierarchical_score``: the
   levels' weighted sum) against every caption, into one (N_img, N_cap) float32 matrix on the host.
3. ``evaluate``: one model or an ensemble (the sum of the models' matrices, e.g. an i2t model
   and a t2i model: the paper's "ensemble" row), under protocol "1k" (Flickr30K: the whole
   split), "coco1k" (MSCOCO: mean over folds of 1,000 images) or "coco5k" (the whole 5K split).

The authors' release encoded every image five times and kept float64 copies of every caption's
tokens: ``feature_memory_bytes`` shows what that costs at the paper's dimensions. Here the
Flickr30K test split takes 2.32 GB in fp16 and MSCOCO 5K 11.6 GB; features that need more than
half of the free GPU memory stay in host memory and move to the GPU one block at a time (on an
H100 that scored the Flickr30K-sized gallery as fast as features in GPU memory; see benchmarks/).
``retrieval.py`` adds a two-stage search that scores only a few candidates per query.

    results = evaluate(model, splits["test"], protocol="1k")
    results = evaluate([model_i2t, model_t2i], splits["test"], protocol="coco1k")   # ensemble
    print(format_table({"HAT": results}))
    feature_memory_bytes(1000, 5000, (784, 196, 49), 32, 768, torch.float16) / 1e9  # 2.32 GB
    feature_memory_bytes(5000, 25000, (784, 196, 49), 32, 768, torch.float16) / 1e9  # 11.6 GB (COCO 5K)
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import HATConfig
from ..encoders import load_tokenizer
from ..fast.blocked import caption_ends
from ..fast.device import autocast, pick_device
from ..metrics import coco_1k, recall_at_k
from ..model import pooled_embedding
from ..scan import hierarchical_score
from .cache import load_scores, save_scores, score_key
from .compositional import bag_of_words_similarity, family_accuracy, family_chance, family_labels
from .data import eval_captions, eval_image_loader, tokenize

PROTOCOLS = ("1k", "coco1k", "coco5k")
COCO5K_IMAGES = 5000  # the MSCOCO 5K test split: what the command line requires of --protocol coco5k
GPU_SHARE = 0.5  # features stay in GPU memory when they need at most this share of the free memory
CPU_CHUNK_SIZE = 1024  # pairs per scoring block on a CPU (hat_min.fast.blocked keeps blocks in the caches)
_POOL_ITEMS = 1024  # items pooled at once: bounds the float32 copy of their tokens
GPU_CHUNK_SIZE = 8192  # on a GPU: Flickr30K-sized gallery, H100, i2t 3.5 s against 6.2 s with 1024 (benchmarks/)


@dataclass
class Encoded:
    """Per-level token features of a split; caption j belongs to image j // captions_per_image."""

    image_levels: list[Tensor]  # L x (N_img, R_l, D)
    text_levels: list[Tensor]  # L x (N_cap, W, D), zero past each caption's end
    mask: Tensor  # (N_cap, W) bool, True on real tokens
    captions_per_image: int

    @property
    def nbytes(self) -> int:
        """Memory held by the features and the mask."""
        return sum(t.numel() * t.element_size() for t in [*self.image_levels, *self.text_levels, self.mask])


def feature_memory_bytes(n_images: int, n_captions: int, regions_per_level: Sequence[int], words: int,
                         width: int, dtype: torch.dtype = torch.float16) -> int:
    """Bytes of a split's per-level features: images (N_img, R_l, D), captions (N_cap, W, D) per level, bool mask."""
    size = torch.empty((), dtype=dtype).element_size()
    tokens = n_images * sum(regions_per_level) + n_captions * words * len(regions_per_level)
    return tokens * width * size + n_captions * words


def encode(model: nn.Module, split, batch_size: int = 128, device: str | torch.device | None = None,
           captions_per_image: int = 5, progress: bool = True, tokenizer=None, dtype: torch.dtype | None = None,
           workers: int | None = None) -> Encoded:
    """Every image and every caption of ``split`` encoded once: per-level token features.

    The model is moved to ``device`` (default: ``pick_device()``) and run in eval mode (its mode
    is restored afterwards). ``dtype`` overrides the storage precision (fp16 on GPU, float32 else).
    """
    _check_split(split)
    device = pick_device(None if device is None else str(device))
    cfg = model.config
    if tokenizer is None:
        tokenizer = load_tokenizer(cfg)
    ids, mask = tokenize(tokenizer, eval_captions(split, captions_per_image), cfg.max_text_len)  # (N_cap, W)
    _check_vocab(model, ids)
    _check_finite_weights(model)
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    nbytes = feature_memory_bytes(len(split), len(ids), _regions_per_level(model), ids.shape[1], cfg.embed_dim, dtype)
    store = _storage_device(device, nbytes)
    if progress:
        print(f"features of {len(split):,} images and {len(ids):,} captions: about {nbytes / 1e6:,.1f} MB "
              f"({str(dtype).removeprefix('torch.')}, {store.type} memory)")
    with _eval_mode(model.to(device)):
        images = _encode_images(model, split, batch_size, device, store, dtype, progress, workers)
        texts = _encode_texts(model, ids, mask, batch_size, device, store, dtype, progress)
    return Encoded(images, texts, mask.bool().to(store), captions_per_image)


def similarity(model_or_config: nn.Module | HATConfig, encoded: Encoded, chunk_size: int | None = None,
               image_block: int = 256, progress: bool = True, device: str | torch.device | None = None) -> Tensor:
    """HAT's similarity of every image with every caption: (N_img, N_cap) float32 on the host.

    Per block of ``image_block`` images, HAT's score (``hat_min.scan.hierarchical_score``, the config's
    levels, weights and ``scan_implementation``) against all captions. Scores on ``device``: default, the
    features' device, or ``pick_device()`` for features in host memory (moved there a level at a time).
    ``chunk_size`` (pairs per block of the fast implementations) defaults to ``default_chunk_size``.
    """
    cfg = model_or_config if isinstance(model_or_config, HATConfig) else model_or_config.config
    _check_encoded(cfg, encoded)
    device = _scoring_device(encoded, device)
    chunk_size = chunk_size or default_chunk_size(device)
    n_img = encoded.image_levels[0].shape[0]
    total = torch.zeros(n_img, encoded.mask.shape[0])  # (N_img, N_cap)
    mask = encoded.mask.to(device)
    with torch.no_grad():
        for i in tqdm(range(0, n_img, max(1, image_block)), desc="scoring", unit="block", disable=not progress):
            block = [f[i : i + image_block] for f in encoded.image_levels]  # L x (b, R_l, D)
            total[i : i + image_block] = hierarchical_score(
                block, encoded.text_levels, mask, cfg.weights, cfg.direction, cfg.lambda_softmax,
                cfg.scan_implementation, chunk_size, device=device).cpu()  # (b, N_cap)
    return total


def level_similarity(config: HATConfig, encoded: Encoded, level: int, **kwargs) -> Tensor:
    """The score of one level alone (weight 1, the others left out): (N_img, N_cap), as ``similarity``."""
    one = Encoded([encoded.image_levels[level]], [encoded.text_levels[level]], encoded.mask, encoded.captions_per_image)
    return similarity(config.replace(levels=(config.levels[level],), level_weights=None), one, **kwargs)


def global_embeddings(encoded: Encoded) -> tuple[Tensor, Tensor]:
    """One unit vector per image (N_img, D) and per caption (N_cap, D) (``hat_min.model.pooled_embedding``), float32."""
    n_img, n_cap = encoded.image_levels[0].shape[0], encoded.mask.shape[0]
    images = torch.cat([pooled_embedding([f[i : i + _POOL_ITEMS] for f in encoded.image_levels])
                        for i in range(0, n_img, _POOL_ITEMS)])
    captions = torch.cat([pooled_embedding([f[i : i + _POOL_ITEMS] for f in encoded.text_levels],
                                           encoded.mask[i : i + _POOL_ITEMS]) for i in range(0, n_cap, _POOL_ITEMS)])
    return images, captions


def evaluate(models: nn.Module | Sequence[nn.Module], split, protocol: str = "1k", *, batch_size: int = 128,
             device: str | torch.device | None = None, captions_per_image: int = 5, fold_images: int = 1000,
             chunk_size: int | None = None, image_block: int = 256, progress: bool = True,
             return_sims: bool = False, tokenizer=None, workers: int | None = None,
             baselines: bool = False, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Recall@K of one model, or of an ensemble (the sum of its models' similarities), under ``protocol``.

    Returns the metrics of ``hat_min.metrics`` (i2t_r1 ... t2i_r10, rsum, medr, meanr), on splits
    with families of hard negatives (the generated scenes) the within-family accuracies of
    ``hat_min.evaluation.compositional`` (family_i2t, family_t2i, per kind of swap, in_family_*), the pairs
    scored with cross-attention "xattn_pairs" (N_img * N_cap), timings and memory under "info", and
    with ``return_sims`` the summed matrix "sims" and each model's "model_sims".

    ``baselines``: also "baselines", the same metrics of references on the same split: "pooled"
    (the same model's pooled global embeddings: a dual encoder), "bag of words" (a scorer that
    sees only the scene words; generated scenes only) and "chance".

    ``cache_dir``: keep each model's scores of this split there (``hat_min.evaluation.cache``: keyed by the
    model's config and weights, the split and ``captions_per_image``), and read them instead of encoding and
    scoring when they are there ("info"'s "cached": how many models were read). Not with a ``tokenizer``.
    """
    models = _as_list(models)
    if cache_dir is not None and tokenizer is not None:
        raise ValueError("cache_dir keys the scores by the model and the split, not by a tokenizer given apart: "
                         "pass one or the other")
    _check_protocol(protocol, len(split), fold_images)
    labels = family_labels(split)
    total, per_model, pooled = None, [], None
    info: dict[str, Any] = {"protocol": protocol, "models": len(models), "n_images": len(split),
                            "n_captions": len(split) * captions_per_image, "encode_s": 0.0, "score_s": 0.0,
                            "feature_bytes": 0, "cached": 0}
    for model in models:
        start = time.perf_counter()
        path = None if cache_dir is None else \
            Path(cache_dir) / f"{model.config.name}-{score_key(model, split, captions_per_image)}-gallery.pt"
        saved = load_scores(path)
        if saved is None:
            encoded = encode(model, split, batch_size, device, captions_per_image, progress, tokenizer, workers=workers)
            middle = time.perf_counter()
            sims = similarity(model, encoded, chunk_size, image_block, progress, device)
            saved = {"sims": sims, "feature_bytes": torch.tensor(encoded.nbytes)}
            if baselines or path is not None:  # the cache keeps the pooled cosines for a later call with baselines
                img, cap = global_embeddings(encoded)
                saved["pooled"] = (img @ cap.T).cpu()  # (N_img, N_cap)
            del encoded  # one model's features at a time
            if path is not None:
                save_scores(path, saved)
        else:
            middle = start
            info["cached"] += 1
        sims = saved["sims"]
        info["encode_s"] += middle - start
        info["score_s"] += time.perf_counter() - middle
        info["feature_bytes"] = max(info["feature_bytes"], int(saved["feature_bytes"]))
        if baselines:
            pooled = saved["pooled"] if pooled is None else pooled + saved["pooled"]
        total = sims if total is None else total + sims
        per_model.append(sims)
    result: dict[str, Any] = _metrics(total, protocol, captions_per_image, fold_images, labels)
    if baselines:
        result["baselines"] = _baselines(split, pooled, protocol, captions_per_image, fold_images, labels)
    result["xattn_pairs"] = info["xattn_pairs"] = total.numel()  # every pair (each model of an ensemble scores all)
    result["info"] = info
    if return_sims:
        result["sims"], result["model_sims"] = total, per_model
    return result


def chance_recall(n_images: int, captions_per_image: int = 5, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected Recall@K (percent) and rSum of a scorer that ranks at random, on a gallery of ``n_images``."""
    n_cap = n_images * captions_per_image
    result: dict[str, float] = {}
    for k in ks:  # i2t: some of the image's captions among k random captions; t2i: its image among k
        miss = 1.0
        for i in range(min(k, n_cap)):
            miss *= max(0, n_cap - captions_per_image - i) / (n_cap - i)
        result[f"i2t_r{k}"] = 100.0 * (1.0 - miss)
    for k in ks:
        result[f"t2i_r{k}"] = 100.0 * min(1.0, k / n_images)
    result["rsum"] = sum(result.values())
    return result


def _metrics(sims: Tensor, protocol: str, captions_per_image: int, fold_images: int,
             labels) -> dict[str, float]:
    """Recall@K under the protocol, and the family metrics when the split has families."""
    result = _protocol_metrics(sims, protocol, captions_per_image, fold_images)
    if labels is not None:
        result.update(family_accuracy(sims, labels, captions_per_image))
    return result


def _baselines(split, pooled: Tensor, protocol: str, captions_per_image: int, fold_images: int,
               labels) -> dict[str, dict[str, float]]:
    """The references of ``evaluate(..., baselines=True)``: pooled embeddings, bag of words, chance."""
    out = {"pooled": _metrics(pooled, protocol, captions_per_image, fold_images, labels)}
    if labels is not None and "scene" in split.column_names:
        bow = bag_of_words_similarity(split, captions_per_image)
        out["bag of words"] = _metrics(bow, protocol, captions_per_image, fold_images, labels)
    n_img = fold_images if protocol == "coco1k" else len(split)
    out["chance"] = chance_recall(n_img, captions_per_image)
    if labels is not None:
        out["chance"].update(family_chance(labels, captions_per_image))
    return out


# ----------------------------------------------------------------------------- encoding helpers
def _encode_images(model: nn.Module, split, batch_size: int, device: torch.device, store: torch.device,
                   dtype: torch.dtype, progress: bool, workers: int | None) -> list[Tensor]:
    """Every image once, in order: L tensors (N_img, R_l, D) on ``store``."""
    out: list[Tensor] = []
    row = 0
    bar = tqdm(total=len(split), desc="encoding images", unit="img", disable=not progress)
    for images in eval_image_loader(split, model.config, batch_size, workers, device):  # (B, 3, S, S)
        with torch.inference_mode(), autocast(device):
            levels = model.encode_image(images.to(device, non_blocking=True))  # L x (B, R_l, D)
        if not out:
            out = [torch.empty(len(split), *f.shape[1:], dtype=dtype, device=store) for f in levels]
        for buffer, feats in zip(out, levels):
            buffer[row : row + len(images)] = _stored(feats, store, dtype)
        row += len(images)
        bar.update(len(images))
    bar.close()
    return out


def _encode_texts(model: nn.Module, ids: Tensor, mask: Tensor, batch_size: int, device: torch.device,
                  store: torch.device, dtype: torch.dtype, progress: bool) -> list[Tensor]:
    """Every caption once, longest first, each batch cut to its longest caption: L tensors (N_cap, W, D)."""
    ends = caption_ends(mask)  # (N_cap,) index of the last real token + 1
    order = torch.argsort(ends, descending=True, stable=True)
    out = [torch.zeros(*ids.shape, model.config.embed_dim, dtype=dtype, device=store) for _ in model.config.levels]
    bar = tqdm(total=len(ids), desc="encoding captions", unit="cap", disable=not progress)
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        width = int(ends[rows[0]])  # the batch's longest caption (sorted longest first)
        batch_ids, batch_mask = ids[rows, :width].to(device), mask[rows, :width].to(device)  # (B, w)
        with torch.inference_mode(), autocast(device):
            levels = model.encode_text(batch_ids, batch_mask)  # L x (B, w, D)
        for buffer, feats in zip(out, levels):
            buffer[rows.to(store), :width] = _stored(feats * batch_mask[..., None], store, dtype)
        bar.update(len(rows))
    bar.close()
    return out


def _stored(feats: Tensor, store: torch.device, dtype: torch.dtype) -> Tensor:
    """``feats`` in the storage dtype and memory, refusing values the dtype cannot hold."""
    if not bool(torch.isfinite(feats).all()):
        kind = str(feats.dtype).removeprefix("torch.")
        raise ValueError(f"the model computes NaN or infinite token features ({kind}) from finite weights: it "
                         f"overflows that precision or has diverged; evaluate it on the CPU (float32) or use an "
                         f"earlier checkpoint")
    out = feats.to(store, dtype)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"token features overflow {dtype}; pass dtype=torch.float32 to encode")
    return out


def _check_finite_weights(model: nn.Module) -> None:
    """A model whose weights hold NaN or infinity cannot rank anything: one ValueError naming the tensors."""
    bad = [name for name, p in model.state_dict().items()
           if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"the model's weights contain NaN or infinite values ({', '.join(bad[:3])}{more}): it "
                         f"diverged in training or its file is damaged; use an earlier checkpoint")


def _regions_per_level(model: nn.Module) -> list[int]:
    """Image tokens of each level at the config's image size (used for the memory estimate)."""
    regions = model.image_encoder.regions(model.config.image_size)
    return [regions[stage] for stage, _ in model.config.levels]


def default_chunk_size(device: torch.device) -> int:
    """Pairs per block of the fast scoring: larger on a GPU, where each block costs some 20 kernel launches."""
    return GPU_CHUNK_SIZE if torch.device(device).type == "cuda" else CPU_CHUNK_SIZE


def _storage_device(device: torch.device, nbytes: int) -> torch.device:
    """The compute device if the features fit there (GPU: a share of the free memory), else the host."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes <= GPU_SHARE * free else torch.device("cpu")


def _scoring_device(encoded: Encoded, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return pick_device(str(device))
    where = encoded.image_levels[0].device
    return where if where.type != "cpu" else pick_device()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- checks and metrics
def _as_list(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models:
        raise ValueError("evaluate needs at least one model (a HAT, or a list of them for an ensemble)")
    for model in models:
        if not isinstance(getattr(model, "config", None), HATConfig):
            raise TypeError(f"expected a HAT model (with a HATConfig .config), got {type(model).__name__}")
    return models


def _check_split(split) -> None:
    missing = [c for c in ("image", "captions") if c not in split.column_names]
    if missing:
        raise ValueError(f"the split lacks the column(s) {', '.join(missing)}; "
                         "prepare it with data_prep (columns image, captions, image_id, filename)")
    if len(split) == 0:
        raise ValueError("the split is empty: nothing to evaluate")


def _check_vocab(model: nn.Module, ids: Tensor) -> None:
    vocab = model.text_encoder.bert.get_input_embeddings().num_embeddings
    if int(ids.max()) >= vocab:
        raise ValueError(f"the tokenizer gives token id {int(ids.max())} but the model's text encoder "
                         f"({model.config.text_model!r}) has {vocab} tokens; use the model's own tokenizer "
                         "(hat_min.load_tokenizer(model.config))")


def _check_encoded(cfg: HATConfig, encoded: Encoded) -> None:
    levels = (len(encoded.image_levels), len(encoded.text_levels))
    widths = {t.shape[-1] for t in [*encoded.image_levels, *encoded.text_levels]}
    if levels != (len(cfg.levels),) * 2 or widths != {cfg.embed_dim}:
        raise ValueError(f"these features ({levels[0]} image / {levels[1]} text levels, width {sorted(widths)}) "
                         f"were not encoded by a model of this config ({len(cfg.levels)} levels, "
                         f"width {cfg.embed_dim}); encode the split with this model")
    n_img, n_cap = encoded.image_levels[0].shape[0], encoded.mask.shape[0]
    if n_cap != n_img * encoded.captions_per_image:
        raise ValueError(f"{n_cap} captions for {n_img} images is not {encoded.captions_per_image} per image")


def _check_protocol(protocol: str, n_images: int, fold_images: int) -> None:
    """Fail before any encoding when the protocol cannot apply to the split."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol == "coco1k" and (fold_images < 1 or n_images % fold_images):
        raise ValueError(f"protocol 'coco1k' needs folds of fold_images={fold_images} images, but the split "
                         f"has {n_images:,} images; pass a fold_images that divides it (`--fold-images N` on the "
                         f"command line), or use protocol '1k' (the whole split)")


def _protocol_metrics(sims: Tensor, protocol: str, captions_per_image: int, fold_images: int) -> dict[str, float]:
    if protocol == "coco1k":
        return coco_1k(sims, captions_per_image, fold_images)
    return recall_at_k(sims, captions_per_image)  # "1k" (Flickr30K) and "coco5k": the whole split
