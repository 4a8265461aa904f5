"""Level knock-out: one trained model scored with each subset of its levels, inside families only.

HAT's score is a weighted sum over levels (``hat_min.scan.hierarchical_score``), so taking a level out
of a trained model costs no training: score each level alone once, and every subset of levels is a sum.
The authors' release validates this way (it prints the top level alone beside the three-level sum).
Retraining without a level (notebook 04's grid) asks another question: what a model trained without it
learns instead.

The metrics that separate scenes with the same words (``hat_min.evaluation.compositional``: within-family
accuracy, by kind of swap, Winoground) compare only pairs inside a family: a family of 4 images and 20
captions is 80 pairs, so a 1,000-image split costs 20,000 cross-attention scores per level instead of
the 5,000,000 of its whole gallery. Recall@K needs the whole gallery (``evaluate``) and is not given here.

    scores = family_level_scores(model, splits["test_frames"])   # each level alone, on the pairs inside families
    scores.metrics((0, 1, 2))                                     # all levels: {"family_i2t": ..., "winoground_group": ...}
    scores.counts((2,))                                           # the top level alone, family by family
    scores.caption_groups(frames, (0, 1, 2))                      # t2i per kind of swap, for each group of captions
    level_subsets(3)                                              # (0, 1, 2), (1, 2), (0, 2), ..., (0,)
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..scan import hierarchical_score
from .cache import load_scores, save_scores, score_key
from .compositional import KINDS, FamilyLabels, family_hits, family_accuracy, family_counts, family_labels
from .protocols import _scoring_device, default_chunk_size, encode


@dataclass
class FamilyScores:
    """Each level's HAT score of every (image, caption) pair inside a family of one split."""

    per_level: Tensor  # (L, P) level l's score of pair p
    images: Tensor  # (P,) image index of pair p
    captions: Tensor  # (P,) caption index of pair p
    weights: tuple[float, ...]  # (L,) the model's level weights (HATConfig.weights)
    labels: FamilyLabels
    captions_per_image: int

    def sims(self, subset: tuple[int, ...]) -> Tensor:
        """(N_img, N_cap) the weighted sum over ``subset``'s levels inside families, -inf outside them."""
        if not subset or not all(0 <= level < len(self.weights) for level in subset) or len(set(subset)) != len(subset):
            raise ValueError(f"subset must be distinct level indices in 0..{len(self.weights) - 1}, got {subset}")
        n_img = self.labels.family.shape[0]
        total = sum(self.weights[level] * self.per_level[level] for level in subset)  # (P,)
        out = torch.full((n_img, n_img * self.captions_per_image), float("-inf"))
        out[self.images, self.captions] = total
        return out

    def metrics(self, subset: tuple[int, ...]) -> dict[str, float]:
        """Within-family accuracy (both retrieval directions, by kind of swap) and Winoground's scores, percent."""
        out = family_accuracy(self.sims(subset), self.labels, self.captions_per_image)
        return {k: v for k, v in out.items() if not k.startswith("in_family")}  # top-1 in family needs the gallery

    def counts(self, subset: tuple[int, ...]) -> dict[str, Tensor]:
        """``family_counts`` of ``subset``: {metric: (F, 2) hits and queries per family}."""
        return family_counts(self.sims(subset), self.labels, self.captions_per_image)

    def caption_groups(self, groups: list, subset: tuple[int, ...]) -> dict:
        """Text-to-image accuracy against each kind of swap, for each group of captions (``groups[c]`` is caption
        c's group, e.g. the sentence frame that wrote it): {group: {"captions": n, kind: percent}}, groups in
        order of first appearance; a kind no caption of the group meets is left out."""
        sims = self.sims(subset)  # (N_img, N_cap), -inf outside families
        if len(groups) != sims.shape[1]:
            raise ValueError(f"groups has {len(groups)} entries for {sims.shape[1]} captions")
        kinds = family_hits(sims, self.labels, self.captions_per_image)  # {metric: (hits, where, family)}
        out = {}
        for group in dict.fromkeys(groups):
            mine = torch.tensor([g == group for g in groups])  # (N_cap,)
            out[group] = {"captions": int(mine.sum())}
            for name in KINDS:
                if f"family_t2i_{name}" in kinds:
                    hits, where, _ = kinds[f"family_t2i_{name}"]  # (N_cap, N_img) caption beats that member; counts
                    where = where & mine[:, None]
                    if where.any():
                        out[group][name] = 100.0 * hits[where].float().mean().item()
        return out


def family_pairs(labels: FamilyLabels, captions_per_image: int = 5) -> tuple[Tensor, Tensor]:
    """Every (image, caption) pair whose caption describes a member of the image's family: (P,), (P,) indices."""
    owner = torch.arange(labels.family.shape[0] * captions_per_image) // captions_per_image  # (N_cap,)
    same = labels.family[:, None] == labels.family[owner][None, :]  # (N_img, N_cap)
    images, captions = same.nonzero(as_tuple=True)
    return images, captions


def family_level_scores(model: nn.Module, split, batch_size: int = 128, progress: bool = False,
                        workers: int | None = None, cache_dir: str | Path | None = None) -> FamilyScores:
    """Encode ``split`` once and score each of the model's levels alone on the pairs inside its families.

    ``cache_dir``: keep the scores there, keyed by the model's config and weights and the split's fingerprint,
    so that a second notebook scoring the same model on the same split reads them (tensors only).
    """
    labels = family_labels(split)
    if labels is None:
        raise ValueError("a level knock-out scores within families: it needs a split with `family` and `scene` "
                         "columns (the generated scenes); on Flickr30K use evaluate() once per level subset")
    cfg = model.config
    path = None if cache_dir is None else Path(cache_dir) / f"{cfg.name}-{score_key(model, split)}.pt"
    saved = load_scores(path)
    if saved is not None:
        return FamilyScores(saved["per_level"], saved["images"], saved["captions"], tuple(cfg.weights), labels,
                            int(saved["captions_per_image"]))
    encoded = encode(model, split, batch_size, progress=progress, workers=workers)
    device = _scoring_device(encoded, None)
    images, captions = family_pairs(labels, encoded.captions_per_image)
    mask = encoded.mask.to(device)
    per_level = torch.zeros(len(encoded.image_levels), len(images))  # (L, P)
    for rows, block in _family_blocks(labels, images, encoded.captions_per_image):
        image_rows, caption_rows = rows
        with torch.no_grad():
            for level, (image, text) in enumerate(zip(encoded.image_levels, encoded.text_levels)):
                sims = hierarchical_score([image[image_rows]], [text[caption_rows]], mask[caption_rows], [1.0],
                                          cfg.direction, cfg.lambda_softmax, cfg.scan_implementation,
                                          default_chunk_size(device), device=device).float().cpu()  # (b_img, b_cap)
                per_level[level, block] = sims[_local(image_rows, images[block]), _local(caption_rows, captions[block])]
    if path is not None:
        save_scores(path, {"per_level": per_level, "images": images, "captions": captions,
                           "captions_per_image": encoded.captions_per_image})
    return FamilyScores(per_level, images, captions, tuple(cfg.weights), labels, encoded.captions_per_image)


def _family_blocks(labels: FamilyLabels, images: Tensor, captions_per_image: int, families_per_block: int = 8):
    """Blocks of a few families: ((image rows, caption rows), indices into the pairs of those families).

    Scoring a block's images against all its captions (the fast all-pairs path) and keeping the pairs inside
    each family wastes (families per block - 1) of every families-per-block scores, and is still far cheaper
    than gathering every pair's tokens one by one."""
    ids = torch.unique(labels.family)
    pair_family = labels.family[images]  # (P,)
    for start in range(0, len(ids), families_per_block):
        chosen = ids[start : start + families_per_block]
        image_rows = torch.isin(labels.family, chosen).nonzero(as_tuple=True)[0]  # (b_img,)
        caption_rows = (image_rows[:, None] * captions_per_image + torch.arange(captions_per_image)).reshape(-1)
        yield (image_rows, caption_rows), torch.isin(pair_family, chosen).nonzero(as_tuple=True)[0]


def _local(rows: Tensor, wanted: Tensor) -> Tensor:
    """Positions of ``wanted`` indices within the sorted ``rows``."""
    return torch.searchsorted(rows, wanted)


def level_subsets(n_levels: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``n_levels`` levels, largest first, then from the top level down."""
    subsets = [s for k in range(n_levels, 0, -1) for s in itertools.combinations(range(n_levels), k)]
    return sorted(subsets, key=lambda s: (-len(s), [-level for level in reversed(s)]))
