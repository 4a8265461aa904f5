"""Compositional accuracy: does a model tell apart scenes that share every word?

The generated scenes (``data_prep.synthetic``) come in families of four with the same bag of
words: the base scene, its *binding swap* (colour, texture or size exchanged between the two
groups of objects), its *role swap* (the groups exchange places) and both swaps. Recall@K mixes
"finds the right words" with "binds them right"; these metrics separate the two:

- ``family_i2t``: each image ranks only the captions of its own family (4 images x 5 captions);
  a hit when its top caption is one of its own. ``family_t2i``: each caption ranks only the
  images of its family; a hit when its image is on top. Chance: 1 / family size (25 %).
- ``family_{i2t,t2i}_{colour,texture,size,role,both}``: the same, between one image and one
  family member at a time, by the kind of swap that separates them (two-way, chance 50 %):
  ``colour`` / ``texture`` / ``size`` are binding swaps of that attribute, ``role`` the groups'
  places, ``both`` the two together.
- ``in_family_i2t`` / ``in_family_t2i``: the share of queries whose top-1 over the whole gallery
  lies in the right family: what a bag of words can already do.
- ``winoground_text`` / ``winoground_image`` / ``winoground_group``: Winoground's scores (Thrush et
  al., CVPR 2022), on every pair of family members (two images, a caption of each with the same
  words, the k-th caption of each image paired with the k-th of the other): *text*, both images
  prefer their own caption; *image*, both captions prefer their own image; *group*, both at once.
  Chance 25 / 25 / 16.7 %. ``winoground_group_{colour,...,both}``: the group score by kind of swap.

Ties count against the model, as in ``metrics.recall_at_k``. A split without a ``family`` and a
``scene`` column (Flickr30K, MSCOCO) has no such metrics: ``family_labels`` returns None.

The two references that every table shows beside HAT (``evaluate(..., baselines=True)``): the
same model's pooled global embeddings (a CLIP-style dual encoder, ``hat_min.model.pooled_embedding``), and
``bag_of_words_similarity``, a scorer that reads each scene's words perfectly and nothing else.
That is this tutorial's analogue of the compositional benchmarks (Winoground, ARO) on which dual
encoders behave like bags of words.

    labels = family_labels(splits["test"])                   # None without families
    family_accuracy(sims, labels)                            # {"family_i2t": ..., "family_t2i_role": ...}
    family_counts(sims, labels)["family_t2i_role"]           # (F, 2) hits and queries per family
    family_accuracy(bag_of_words_similarity(splits["test"]), labels)   # about 25 / 25: words alone
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("colour", "texture", "size", "role", "both")  # the swap that separates two family members
_BINDING, _ROLE = 1, 2  # bits of a variant: base 0, binding 1, role 2, binding+role 3
_VARIANT_BITS = {"base": 0, "binding": _BINDING, "role": _ROLE, "binding+role": _BINDING | _ROLE}


@dataclass
class FamilyLabels:
    """What separates the images of a split: family ids, swap variants and swapped attributes."""

    family: Tensor  # (N_img,) long: images with the same id share a bag of words
    variant: Tensor  # (N_img,) long: bits of the variant (1 binding swap, 2 role swap)
    swapped: list[str]  # (N_img,) the attribute a binding swap exchanges in this image's family

    def kind_matrix(self) -> Tensor:
        """(N_img, N_img) long: index into KINDS of the swap between two members of a family, -1 otherwise."""
        same = self.family[:, None] == self.family[None, :]  # (N, N)
        bits = self.variant[:, None] ^ self.variant[None, :]  # (N, N) 0 itself, 1 binding, 2 role, 3 both
        attribute = torch.tensor([KINDS.index(a) for a in self.swapped])  # (N,) colour 0, texture 1, size 2
        kind = torch.full(bits.shape, -1, dtype=torch.long)
        kind = torch.where(bits == _BINDING, attribute[:, None].expand_as(bits), kind)
        kind = torch.where(bits == _ROLE, torch.full_like(kind, KINDS.index("role")), kind)
        kind = torch.where(bits == (_BINDING | _ROLE), torch.full_like(kind, KINDS.index("both")), kind)
        return kind.masked_fill(~same, -1)


def family_labels(split) -> FamilyLabels | None:
    """The family labels of a prepared split, or None when it has no ``family`` and ``scene`` columns."""
    if not {"family", "scene"} <= set(split.column_names):
        return None
    scenes = [json.loads(s) for s in split["scene"]]
    try:
        variant = [_VARIANT_BITS[s["variant"]] for s in scenes]
        swapped = [s["swapped"] for s in scenes]
    except KeyError as err:
        raise ValueError(f"the split's scene records lack or misname {err} (expected data_prep.synthetic's)") from None
    return FamilyLabels(torch.tensor(list(split["family"]), dtype=torch.long), torch.tensor(variant), swapped)


def family_accuracy(sims: Tensor, labels: FamilyLabels, captions_per_image: int = 5) -> dict[str, float]:
    """Within-family accuracy (both directions), per kind of swap, and top-1 in the right family, in percent."""
    sims = _check_sims(sims, labels, captions_per_image)
    n_img, n_cap = sims.shape
    hits = family_hits(sims, labels, captions_per_image)
    out = {name: _percent(hit, where) for name, (hit, where, _) in hits.items()}
    same = labels.family[:, None] == labels.family[None, :]  # (N, N)
    owner = torch.arange(n_cap) // captions_per_image  # (N_cap,)
    best = sims.view(n_img, n_img, captions_per_image).amax(-1)  # (N, N) image i's best caption of image j
    out["in_family_i2t"] = _percent(_masked_max(best, same) > _masked_max(best, ~same), torch.ones(n_img, dtype=bool))
    out["in_family_t2i"] = _percent(_masked_max(sims.T, same[owner]) > _masked_max(sims.T, ~same[owner]),
                                    torch.ones(n_cap, dtype=bool))
    out.update(winoground_scores(sims, labels, captions_per_image))
    return out


def family_counts(sims: Tensor, labels: FamilyLabels, captions_per_image: int = 5) -> dict[str, Tensor]:
    """The within-family metrics of ``family_accuracy`` (``family_i2t``, ``family_t2i_colour``, ...) family by
    family: {metric: (F, 2) float tensor of hits and queries per family}, families in increasing id order.

    100 * hits.sum() / queries.sum() is the metric; the rows are what a bootstrap over families resamples
    (queries of one family share their scenes' words, so they are not independent of each other).
    """
    sims = _check_sims(sims, labels, captions_per_image)
    ids = torch.unique(labels.family)  # (F,) sorted
    out = {}
    for name, (hits, where, family) in family_hits(sims, labels, captions_per_image).items():
        row = torch.searchsorted(ids, family[where])  # (Q,) each counted query's family row
        counts = torch.zeros(len(ids), 2)
        counts[:, 0].index_add_(0, row, hits[where].float())
        counts[:, 1].index_add_(0, row, torch.ones(len(row)))
        out[name] = counts
    return out


def family_hits(sims: Tensor, labels: FamilyLabels,
                captions_per_image: int) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """{metric: (hits, where, family)}, three tensors of one shape: whether each query (or query x member pair)
    was right, whether it counts, and the family it belongs to."""
    n_img, n_cap = sims.shape
    same = labels.family[:, None] == labels.family[None, :]  # (N, N)
    others = same & ~torch.eye(n_img, dtype=torch.bool)  # (N, N) the other members of each family
    kind = labels.kind_matrix()  # (N, N)
    best = sims.view(n_img, n_img, captions_per_image).amax(-1)  # (N, N) image i's best caption of image j
    own = best.diagonal()  # (N,) image i's best own caption
    owner = torch.arange(n_cap) // captions_per_image  # (N_cap,)
    true = sims[owner, torch.arange(n_cap)]  # (N_cap,) each caption's score with its own image
    by_caption = sims.T  # (N_cap, N_img): caption c against every image
    cap_others = others[owner]  # (N_cap, N_img)
    fam_img, fam_cap = labels.family, labels.family[owner]  # (N,), (N_cap,)

    has = others.any(1)  # images with at least one other member
    out = {"family_i2t": (own > _masked_max(best, others), has, fam_img),
           "family_t2i": (true > _masked_max(by_caption, cap_others), has[owner], fam_cap)}
    for k, name in enumerate(KINDS):
        pairs = kind == k  # (N, N) ordered pairs (query image i, member j) of this kind
        if pairs.any():
            out[f"family_i2t_{name}"] = (own[:, None] > best, pairs, fam_img[:, None].expand(n_img, n_img))
            out[f"family_t2i_{name}"] = (true[:, None] > by_caption, pairs[owner], fam_cap[:, None].expand(n_cap, n_img))
    return out


def _check_sims(sims: Tensor, labels: FamilyLabels, captions_per_image: int) -> Tensor:
    sims = sims.float().cpu()
    n_img, n_cap = sims.shape
    if labels.family.shape[0] != n_img or n_cap != n_img * captions_per_image:
        raise ValueError(f"sims {tuple(sims.shape)} does not match {labels.family.shape[0]} labelled images "
                         f"with {captions_per_image} captions each")
    return sims


def winoground_scores(sims: Tensor, labels: FamilyLabels, captions_per_image: int = 5) -> dict[str, float]:
    """Winoground's text, image and group scores over every pair of family members, overall and (group) by kind.

    A pair of images (i, j) of one family and a caption slot k give one item: captions c0 = i's k-th,
    c1 = j's k-th. text: s(i, c0) > s(i, c1) and s(j, c1) > s(j, c0); image: s(i, c0) > s(j, c0)
    and s(j, c1) > s(i, c1); group: both. Ties count against the model. Percent.
    """
    sims = sims.float().cpu()
    kind = labels.kind_matrix()  # (N, N)
    i, j = torch.triu(kind >= 0, diagonal=1).nonzero(as_tuple=True)  # (P,) each unordered pair once
    if not len(i):
        return {}
    slots = torch.arange(captions_per_image)
    c0, c1 = i[:, None] * captions_per_image + slots, j[:, None] * captions_per_image + slots  # (P, cpi)
    s_i0, s_i1 = sims[i[:, None], c0], sims[i[:, None], c1]  # (P, cpi) image i with c0, c1
    s_j0, s_j1 = sims[j[:, None], c0], sims[j[:, None], c1]  # (P, cpi) image j with c0, c1
    text = (s_i0 > s_i1) & (s_j1 > s_j0)
    image = (s_i0 > s_j0) & (s_j1 > s_i1)
    group = text & image
    every = torch.ones_like(text)
    out = {"winoground_text": _percent(text, every), "winoground_image": _percent(image, every),
           "winoground_group": _percent(group, every)}
    pair_kind = kind[i, j][:, None].expand_as(group)  # (P, cpi)
    for k, name in enumerate(KINDS):
        if (pair_kind == k).any():
            out[f"winoground_group_{name}"] = _percent(group, pair_kind == k)
    return out


def family_chance(labels: FamilyLabels, captions_per_image: int = 5) -> dict[str, float]:
    """What a scorer that ranks at random reaches on each family metric (percent)."""
    n = labels.family.shape[0]
    size = (labels.family[:, None] == labels.family[None, :]).sum(1).float()  # (N,) members of each image's family
    many = size > 1
    out = {"family_i2t": 100 * (1 / size[many]).mean().item(), "family_t2i": 100 * (1 / size[many]).mean().item()}
    kind = labels.kind_matrix()
    for k, name in enumerate(KINDS):
        if (kind == k).any():
            out[f"family_i2t_{name}"] = out[f"family_t2i_{name}"] = 50.0
    # i2t: its family's captions among all; t2i: its family's images among all
    out["in_family_i2t"] = 100 * (size * captions_per_image / (n * captions_per_image)).mean().item()
    out["in_family_t2i"] = 100 * (size / n).mean().item()
    if (kind >= 0).any():  # Winoground with random scores: each of the two conditions 1/2, both 1/4; group 1/6
        out.update(winoground_text=25.0, winoground_image=25.0, winoground_group=100 / 6)
        out.update({f"winoground_group_{name}": 100 / 6 for k, name in enumerate(KINDS) if (kind == k).any()})
    return out


def bag_of_words_similarity(split, captions_per_image: int = 5, seed: int = 0) -> Tensor:
    """A scorer that sees only words: cosine of bags of scene words, image x caption. -> (N_img, N_cap).

    Each side is the multiset of the two groups' count, size, colour, texture and shape words and
    the relation's axis, read from the ``scene`` column: a caption's bag is its image's scene, as if
    every word of every caption were read perfectly, whatever its phrasing. It is perception without
    structure, so family members tie: ties are broken by seeded noise far below the words' scores.
    """
    if "scene" not in split.column_names:
        raise ValueError("a bag-of-words reference needs the generated scenes' `scene` column")
    images = [_bag(json.loads(s)) for s in split["scene"]]
    captions = [bag for bag in images for _ in range(captions_per_image)]  # caption j describes image j // cpi
    vocab = {w: i for i, w in enumerate(sorted({w for bag in images for w in bag}))}
    img, cap = _counts(images, vocab), _counts(captions, vocab)  # (N_img, V), (N_cap, V)
    sims = torch.nn.functional.normalize(img, dim=1) @ torch.nn.functional.normalize(cap, dim=1).T
    noise = torch.rand(sims.shape, generator=torch.Generator().manual_seed(seed))
    return sims + 1e-4 * noise  # cosines of different bags differ by far more than 1e-4


def _bag(scene: dict) -> list[str]:
    axis = "vertical" if scene["relation"] in ("above", "below") else "horizontal"
    words = [axis]
    for role in ("subject", "object"):
        group = scene[role]
        words += [f"count={group['count']}", group["size"], group["colour"], group["texture"], group["shape"]]
    return words


def _counts(bags: list[list[str]], vocab: dict[str, int]) -> Tensor:
    out = torch.zeros(len(bags), len(vocab))
    for row, bag in enumerate(bags):
        for word in bag:
            out[row, vocab[word]] += 1
    return out


def _masked_max(values: Tensor, keep: Tensor) -> Tensor:
    """Row-wise max over the kept entries (-inf for a row with none)."""
    return values.masked_fill(~keep, float("-inf")).amax(dim=1)


def _percent(hits: Tensor, where: Tensor) -> float:
    """100 * the share of hits among the ``where`` entries (0 when there are none)."""
    count = int(where.sum())
    return 100.0 * int((hits & where).sum()) / count if count else 0.0
