"""Grounding: does a word's cross-attention land on the objects the word names? One number per level.

Recall@K says whether HAT finds the right picture, not whether it looks in the right place. The
generated scenes (``data_prep.synthetic``) know where every object lies (``scene["boxes"]``), so
the word-to-region attention of ``hat_min.tutorial.attention`` can be scored against them. Definition:

- Words: the colour words and shape words of a caption, synonyms and plurals included ("discs"
  for circle, "plus signs" for cross), each tied to the group (subject or object) whose colour or
  shape it names in the image's scene. A word that names both groups (the two have one shape) or
  neither (a caption of another image) is skipped. A word split by WordPiece, or a two-word shape
  ("plus sign"), stands at its FIRST sub-token.
- Peak region of a word, at each level: i2t, the region that attends most to the word (argmax
  over regions of the word's column of the regions' attention); t2i, the argmax of the word's own
  softmax over the regions. Attention as in ``attention.attention_maps``: the level's region tokens
  from ``model.encode_image`` (region position signal included) against all the caption's real
  tokens ([CLS] and [SEP] too), with the config's lambda. Both directions are reported; the
  model scores with ``config.direction`` only.
- Coverage of a region: the share of its cell (region r of R_l is cell r of Swin's
  sqrt(R_l) x sqrt(R_l) grid, row by row, over the image the model sees) that lies inside the
  union of a group's boxes, counted on the image's pixel grid (a pixel is inside when its centre is).
- Grounding ("on_own_group"): the coverage of each word's peak cell by the boxes of the word's own
  group, averaged over words, in percent. "on_other_group": the same for the other group's boxes,
  the control: a model that binds words to their objects has own >> other. "chance" (and
  "chance_other"): the mean coverage over all cells, i.e. the group's share of the image: what a
  peak drawn uniformly at random would score. "best_cell": the own group's coverage of its most
  covered cell, the ceiling of on_own_group at that grid (coarse cells are never wholly inside a box).

    table = grounding(model, splits["test"])                    # 200 seeded true pairs
    table = grounding(model, splits["test"], pairs=[(0, 0), (0, 5)])   # (image row, caption j)
    print(table.round(1).to_string(index=False))
    boxes = view_boxes(scene, cfg.image_size, cfg.eval_resize_ratio)   # a scene's boxes as the model sees it

Caption j is the k-th caption of image j // 5 (``data.eval_captions``), so the true pairs are
(i, 5 i + k). Columns of the table: level, grid (cells per side), direction, kind (colour,
shape, all), words, on_own_group, on_other_group, chance, chance_other, best_cell (the last five
in percent).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from data_prep.captions import COLOURS, SHAPE_OF  # SHAPE_OF: every shape word of the generator, {"discs": "circle", ...}

from .attention import attention_maps

DIRECTIONS = ("i2t", "t2i")
KINDS = ("colour", "shape")  # the scene keys the words name
GROUPS = ("subject", "object")
_OTHER = {"subject": "object", "object": "subject"}
# (word, ...) -> (kind, value): one-word colours, one- and two-word shapes ("plus", "signs")
_VOCAB = {**{(c,): ("colour", c) for c in COLOURS}, **{tuple(w.split()): ("shape", s) for w, s in SHAPE_OF.items()}}
_LONGEST = max(len(k) for k in _VOCAB)


class Word(NamedTuple):
    """A colour or shape word of a caption and the group it describes."""

    position: int  # index of its first sub-token among the caption's tokens ([CLS] is 0)
    text: str  # the word (or two words) in lower case, WordPiece pieces joined
    kind: str  # "colour" or "shape"
    group: str  # "subject" or "object"


# ----------------------------------------------------------------------------- words
def find_words(tokens: Sequence[str], scene: dict) -> list[Word]:
    """The colour and shape words among a caption's WordPiece ``tokens``, each with the scene group it names.

    Words that name both groups or neither are left out (module docstring).
    """
    words = _whole_words(tokens)
    found, i = [], 0
    while i < len(words):
        n, meaning = _match(words, i)
        if meaning is not None:
            kind, value = meaning
            groups = [g for g in GROUPS if scene[g][kind] == value]
            if len(groups) == 1:
                found.append(Word(words[i][0], " ".join(w for _, w in words[i : i + n]), kind, groups[0]))
        i += n
    return found


def _whole_words(tokens: Sequence[str]) -> list[tuple[int, str]]:
    """(position of the first sub-token, lower-case word) of each word: "##" pieces joined to the one before."""
    words: list[tuple[int, str]] = []
    for i, token in enumerate(tokens):
        if token.startswith("##") and words:
            words[-1] = (words[-1][0], words[-1][1] + token[2:].lower())
        else:
            words.append((i, token.lower()))
    return words


def _match(words: list[tuple[int, str]], i: int) -> tuple[int, tuple[str, str] | None]:
    """The longest vocabulary phrase starting at word i: (its length in words, (kind, value)), else (1, None)."""
    for n in range(min(_LONGEST, len(words) - i), 0, -1):
        key = tuple(w for _, w in words[i : i + n])
        if key in _VOCAB:
            return n, _VOCAB[key]
    return 1, None


# ----------------------------------------------------------------------------- boxes and cells
def box_mask(boxes: Sequence[Sequence[float]], image_size: int) -> Tensor:
    """(S, S) bool: the pixels whose centre lies in one of ``boxes`` [x0, y0, x1, y1] (pixels, x0 <= x < x1)."""
    centres = torch.arange(image_size, dtype=torch.float64) + 0.5  # (S,)
    mask = torch.zeros(image_size, image_size, dtype=torch.bool)  # (S, S) rows are y
    for x0, y0, x1, y1 in boxes:
        inside_y = (centres >= y0) & (centres < y1)  # (S,)
        inside_x = (centres >= x0) & (centres < x1)
        mask |= inside_y[:, None] & inside_x[None, :]
    return mask


def view_boxes(scene: dict, image_size: int, eval_resize_ratio: float = 1.0) -> dict[str, list[list[float]]]:
    """The scene's boxes {group: [[x0, y0, x1, y1], ...]} in pixels of the image the model sees at evaluation:
    resized to ``round(image_size * eval_resize_ratio)``, centre-cropped to ``image_size`` (clipped to it)."""
    resized = round(image_size * eval_resize_ratio)
    scale = resized / scene["image_size"]
    offset = int(round((resized - image_size) / 2.0))  # torchvision's CenterCrop

    def seen(v: float) -> float:
        return min(max(v * scale - offset, 0.0), float(image_size))

    return {group: [[seen(v) for v in box] for box in scene["boxes"][group]] for group in GROUPS}


def cell_coverage(mask: Tensor, side: int, view: float = 1.0) -> Tensor:
    """Share of each cell of a ``side`` x ``side`` grid inside ``mask`` (S, S): (side * side,) float, row by row.

    The grid covers the image the model sees: its central ``view`` fraction of each side (an
    evaluation centre crop; 1.0: the whole image). A pixel belongs to the cell holding its centre.
    """
    size = mask.shape[0]
    if mask.shape != (size, size) or not 0 < view <= 1 or side > size * view:
        raise ValueError(f"need a square (S, S) mask, 0 < view <= 1 and at most S * view cells a side, "
                         f"got {tuple(mask.shape)}, view {view}, side {side}")
    margin = size * (1 - view) / 2  # pixels cropped away on each side
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    cell = torch.floor((centres - margin) / (size * view) * side).long()  # (S,) cell index along one axis
    seen = (cell >= 0) & (cell < side)
    index = (cell[:, None] * side + cell[None, :])[seen[:, None] & seen[None, :]]  # (P,) cell of each seen pixel
    inside = mask[seen[:, None] & seen[None, :]].double()  # (P,)
    counts = torch.bincount(index, minlength=side * side).double()  # (side * side,)
    return torch.bincount(index, weights=inside, minlength=side * side) / counts


# ----------------------------------------------------------------------------- attention peaks
def peak_regions(image_levels: Sequence[Tensor], text_levels: Sequence[Tensor], mask: Tensor,
                 direction: str = "i2t", lambda_softmax: float = 9.0) -> list[Tensor]:
    """Each real token's peak region at every level: L x (W_real,) long, from one pair's L x (R_l, D), L x (W, D), (W,).

    i2t: argmax over regions of the regions' attention on the token; t2i: argmax of the token's
    attention over the regions. Ties go to the lower region index.
    """
    maps = attention_maps(image_levels, text_levels, mask, direction, lambda_softmax)  # L x (W_real, R_l)
    return [m.argmax(dim=1) for m in maps]


def pair_records(image_levels: Sequence[Tensor], text_levels: Sequence[Tensor], mask: Tensor,
                 tokens: Sequence[str], scene: dict, lambda_softmax: float = 9.0, view: float = 1.0) -> list[dict]:
    """One record per (colour or shape word, level, direction) of one pair: its peak cell's coverages (0..1).

    ``tokens`` are the caption's real tokens (W_real = mask.sum()), ``scene`` the image's record.
    """
    if len(tokens) != int(mask.sum()):
        raise ValueError(f"{len(tokens)} tokens for a mask of {int(mask.sum())} real tokens")
    words = find_words(tokens, scene)
    if not words:
        return []
    pixels = {g: box_mask(scene["boxes"][g], scene["image_size"]) for g in GROUPS}  # (S, S) each
    peaks = {d: peak_regions(image_levels, text_levels, mask, d, lambda_softmax) for d in DIRECTIONS}
    records = []
    for level, regions in enumerate(image_levels):
        side = _grid_side(regions.shape[0])
        cover = {g: cell_coverage(pixels[g], side, view) for g in GROUPS}  # (R_l,) each
        for direction in DIRECTIONS:
            for word in words:
                r = int(peaks[direction][level][word.position])
                own, other = cover[word.group], cover[_OTHER[word.group]]
                records.append({"level": level, "grid": side, "direction": direction, "kind": word.kind,
                                "word": word.text, "group": word.group, "own": float(own[r]),
                                "other": float(other[r]), "chance": float(own.mean()),
                                "chance_other": float(other.mean()), "best": float(own.max())})
    return records


def _grid_side(regions: int) -> int:
    side = math.isqrt(regions)
    if side * side != regions:
        raise ValueError(f"{regions} regions do not form a square token grid")
    return side


# ----------------------------------------------------------------------------- a model on a split
def true_pairs(split, n: int = 200, seed: int = 0, captions_per_image: int = 5) -> list[tuple[int, int]]:
    """``n`` seeded (image row, caption j) true pairs: distinct images, one random caption each (j = cpi * row + k)."""
    rng = np.random.default_rng(seed)
    rows = sorted(rng.choice(len(split), size=min(n, len(split)), replace=False).tolist())
    return [(row, captions_per_image * row + int(rng.integers(captions_per_image))) for row in rows]


def word_records(model, split, pairs: Sequence[tuple[int, int]] | None = None, n_pairs: int = 200, seed: int = 0,
                 tokenizer=None, captions_per_image: int = 5, device=None, progress: bool = True) -> list[dict]:
    """``pair_records`` of every (image row, caption j) pair (default: ``true_pairs``), with "row" and "caption"."""
    from ..evaluation.data import eval_captions, tokenize
    from ..evaluation.protocols import encode

    if "scene" not in split.column_names:
        raise ValueError("grounding needs the generated scenes' 'scene' column (boxes): data_prep.synthetic")
    pairs = list(pairs) if pairs is not None else true_pairs(split, n_pairs, seed, captions_per_image)
    cfg = model.config
    if tokenizer is None:
        from ..encoders import load_tokenizer
        tokenizer = load_tokenizer(cfg)
    rows = sorted({row for row, _ in pairs} | {j // captions_per_image for _, j in pairs})
    local = {row: i for i, row in enumerate(rows)}  # split row -> row of the encoded subset
    subset = split.select(rows)
    encoded = encode(model, subset, device=device, captions_per_image=captions_per_image, progress=progress,
                     tokenizer=tokenizer, dtype=torch.float32)
    ids, _ = tokenize(tokenizer, eval_captions(subset, captions_per_image), cfg.max_text_len)  # (N_cap, W)
    scenes = [json.loads(s) for s in subset["scene"]]
    view = cfg.image_size / round(cfg.image_size * cfg.eval_resize_ratio)  # the centre crop of evaluation
    records = []
    for row, j in tqdm(pairs, desc="grounding", unit="pair", disable=not progress):
        i, c = local[row], local[j // captions_per_image] * captions_per_image + j % captions_per_image
        mask = encoded.mask[c].cpu()  # (W,)
        tokens = tokenizer.convert_ids_to_tokens(ids[c][: int(mask.sum())].tolist())
        found = pair_records([f[i].cpu() for f in encoded.image_levels], [f[c].cpu() for f in encoded.text_levels],
                             mask, tokens, scenes[i], cfg.lambda_softmax, view)
        records += [{"row": row, "caption": j, **r} for r in found]
    return records


def summarise(records: Sequence[dict]):
    """The grounding table (pandas) of word records: one row per level, direction and kind (and "all"), in percent."""
    import pandas as pd

    if not records:
        raise ValueError("no colour or shape word to ground (are these captions of the generated scenes?)")
    words = pd.DataFrame(records)
    both = pd.concat([words, words.assign(kind="all")])
    table = both.groupby(["level", "grid", "direction", "kind"]).agg(
        words=("own", "size"), on_own_group=("own", "mean"), on_other_group=("other", "mean"),
        chance=("chance", "mean"), chance_other=("chance_other", "mean"), best_cell=("best", "mean"),
    ).reset_index()
    percent = ["on_own_group", "on_other_group", "chance", "chance_other", "best_cell"]
    table[percent] = 100 * table[percent]
    return table


def grounding(model, split, pairs: Sequence[tuple[int, int]] | None = None, n_pairs: int = 200, seed: int = 0,
              tokenizer=None, captions_per_image: int = 5, device=None, progress: bool = True):
    """The grounding table of ``model`` on ``split`` (module docstring): ``summarise(word_records(...))``."""
    return summarise(word_records(model, split, pairs, n_pairs, seed, tokenizer, captions_per_image, device, progress))
