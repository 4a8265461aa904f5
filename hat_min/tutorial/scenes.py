"""The generated scenes' geometry, read against what a model retrieved: which relations hold, diagonal scenes, errors.

A generated scene has two groups of objects; its captions name one relation between them ("above",
"left of", ...), chosen by the generator from the groups' boxes. When one group lies both above and
left of the other (a *diagonal* scene), two relations are true and the captions name one of them.
Notebook 05 asks whether the model's failures are such scenes, and what the caption it ranked first
gets wrong about the image.

    relations_between(scene)                      # {"above", "left of"} for a diagonal scene
    caption_errors(scene, caption)                # ["colour"], ["texture", "shape", "relation"], [] ...
    wrong = miss_errors(test_split, sims, "i2t")  # each error's count over the R@1 misses
    table = diagonal_failures(test_split, sims)   # are failures' scenes diagonal more than all scenes?

``sims`` is the (N_img, N_cap) matrix of ``hat_min.evaluation.similarity`` (caption j belongs to image
j // captions_per_image); ``scene`` a row's JSON ``scene`` column (or the dict it holds).
"""
from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import torch

from data_prep.captions import parse_caption

from ..evaluation.data import eval_captions
from .viz import _check_sims, worst_queries


def relations_between(scene: dict | str, first: str = "subject", second: str = "object") -> set[str]:
    """The relations "first R second" that hold in a generated scene, by the generator's rule for its
    captions: every box of ``first`` lies wholly above ("above"), below, left of or right of every box
    of ``second`` (``data_prep.synthetic``; no minimum gap here). A diagonal scene has two."""
    scene = json.loads(scene) if isinstance(scene, str) else scene
    a, b = (_extent(scene["boxes"][role]) for role in (first, second))  # (x0, y0, x1, y1) of each group
    found = {"above": a[3] < b[1], "below": b[3] < a[1], "left of": a[2] < b[0], "right of": b[2] < a[0]}
    return {name for name, holds in found.items() if holds}


def is_diagonal(scene: dict | str) -> bool:
    """Whether the two groups are apart along both axes, so that a vertical and a horizontal relation are
    both true of the scene (e.g. "A above B" and "A left of B")."""
    return len(relations_between(scene)) == 2


def caption_relation_holds(scene: dict | str, caption: str) -> bool | None:
    """Whether a caption's relation (of any image) is true of ``scene`` when its groups are read by colour:
    None when the caption does not name the scene's two colours."""
    scene = json.loads(scene) if isinstance(scene, str) else scene
    said = parse_caption(caption)
    role_of = {scene[role]["colour"]: role for role in ("subject", "object")}
    first, second = (role_of.get(said[g]["colour"]) for g in ("subject", "object"))
    if first is None or second is None or first == second:
        return None
    return said["relation"] in relations_between(scene, first, second)


def caption_errors(scene: dict | str, caption: str) -> list[str]:
    """What a caption (of any image) gets wrong about ``scene``: [] when it is true in every word.

    ["colour"] when it does not name the scene's two colours; otherwise its groups are read by colour
    and the list names each attribute that differs in either group ("count", "size", "texture",
    "shape"), then "relation" when its relation is false of the scene (``caption_relation_holds``).
    """
    scene = json.loads(scene) if isinstance(scene, str) else scene
    relation = caption_relation_holds(scene, caption)
    if relation is None:
        return ["colour"]
    said = parse_caption(caption)
    by_colour = {scene[role]["colour"]: scene[role] for role in ("subject", "object")}
    wrong = [a for a in ("count", "size", "texture", "shape")
             if any(by_colour[said[g]["colour"]][a] != said[g][a] for g in ("subject", "object"))]
    return wrong + ([] if relation else ["relation"])


def miss_errors(split, sims: torch.Tensor, direction: str = "i2t", captions_per_image: int = 5) -> dict[str, int]:
    """Over the R@1 misses of one retrieval direction, what the caption gets wrong about the image
    (``caption_errors``): i2t, an image against the caption ranked first; t2i, a caption against the
    image ranked first. {"misses": n, "nothing": misses whose caption is true of that image in every
    word, "other axis": misses whose caption's relation is true of the image but lies on the other
    axis than the image's own captions' (above/below against left/right: only a diagonal scene allows
    it), then per error ("count", "size", "texture", "shape", "relation", "colour") the misses that
    have it}, errors most frequent first."""
    if direction not in ("i2t", "t2i"):
        raise ValueError(f"direction must be 'i2t' or 't2i', not {direction!r}")
    _check_sims(sims, len(split), captions_per_image)
    captions, scenes = eval_captions(split, captions_per_image), split["scene"]
    if direction == "i2t":
        first = sims.argmax(1).tolist()  # (N_img,) the caption ranked first for each image
        pairs = [(i, j) for i, j in enumerate(first) if j // captions_per_image != i]  # (image, caption)
    else:
        first = sims.argmax(0).tolist()  # (N_cap,) the image ranked first for each caption
        pairs = [(i, j) for j, i in enumerate(first) if j // captions_per_image != i]
    errors = [caption_errors(scenes[i], captions[j]) for i, j in pairs]
    tally = Counter(e for found in errors for e in found)
    other_axis = sum(caption_relation_holds(scenes[i], captions[j]) is True
                     and parse_caption(captions[j])["relation"] != json.loads(scenes[i])["relation"] for i, j in pairs)
    return {"misses": len(pairs), "nothing": sum(not found for found in errors), "other axis": other_axis,
            **{e: tally[e] for e in sorted(tally, key=lambda e: -tally[e])}}


def diagonal_failures(split, sims: torch.Tensor, n_shown: int = 4, captions_per_image: int = 5):
    """How often the image of a retrieval failure is diagonal (``is_diagonal``), against all images.

    A table, one row per set of images: all of them, the queries of the image->text R@1 misses, the
    true images of the text->image R@1 misses (one per missed caption), and the worst ``n_shown`` of
    each direction (``worst_queries``, as ``failures_figure`` shows them). Columns: images, diagonal,
    diagonal % (of the row's images).
    """
    _check_sims(sims, len(split), captions_per_image)
    diagonal = torch.tensor([is_diagonal(s) for s in split["scene"]])  # (N_img,)
    owner = torch.arange(sims.shape[1]) // captions_per_image  # (N_cap,)
    i2t_miss = (sims.argmax(1) // captions_per_image != torch.arange(len(split))).nonzero().flatten().tolist()
    t2i_miss = owner[sims.argmax(0) != owner].tolist()  # the true image of every missed caption
    worst = {d: worst_queries(sims, d, n_shown, captions_per_image) for d in ("i2t", "t2i")}
    sets = {"all test images": list(range(len(split))),
            "image->text R@1 misses": i2t_miss,
            "text->image R@1 misses (true images)": t2i_miss,
            f"worst {n_shown} image->text (shown)": [r["query"] for r in worst["i2t"]],
            f"worst {n_shown} text->image (shown, true images)": [r["truth"] for r in worst["t2i"]]}
    rows = {}
    for name, images in sets.items():
        count = int(diagonal[images].sum()) if images else 0
        rows[name] = {"images": len(images), "diagonal": count, "diagonal %": 100 * count / max(1, len(images))}
    return pd.DataFrame.from_dict(rows, orient="index")


def _extent(boxes) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) around a group's boxes."""
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
