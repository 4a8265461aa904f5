"""Family metrics against a literal, one-query-at-a-time version, on seeded inputs with ties."""
import json

import pytest
import torch

from hat_min.evaluation.compositional import (KINDS, FamilyLabels, bag_of_words_similarity, family_accuracy, family_chance, family_labels)

VARIANTS = ("base", "binding", "role", "binding+role")
BITS = {"base": 0, "binding": 1, "role": 2, "binding+role": 3}


def literal_family(sims, family, variants, swapped, cpi):
    """Each image (caption) against the captions (images) of its family, written out."""
    n = len(family)

    def kind(i, j):
        x = BITS[variants[i]] ^ BITS[variants[j]]
        return {1: swapped[i], 2: "role", 3: "both"}[x]

    members = {i: [j for j in range(n) if family[j] == family[i] and j != i] for i in range(n)}
    best = lambda i, j: max(sims[i, j * cpi + k].item() for k in range(cpi))  # noqa: E731
    i2t, t2i, pairs = [], [], {(d, k): [] for d in ("i2t", "t2i") for k in KINDS}
    for i in range(n):
        if members[i]:
            i2t.append(all(best(i, i) > best(i, j) for j in members[i]))
        for j in members[i]:
            pairs["i2t", kind(i, j)].append(best(i, i) > best(i, j))
        for c in range(i * cpi, (i + 1) * cpi):
            if members[i]:
                t2i.append(all(sims[i, c] > sims[j, c] for j in members[i]))
            for j in members[i]:
                pairs["t2i", kind(i, j)].append(bool(sims[i, c] > sims[j, c]))
    in_i2t = [max(best(i, j) for j in range(n) if family[j] == family[i]) >
              max([best(i, j) for j in range(n) if family[j] != family[i]] or [float("-inf")]) for i in range(n)]
    in_t2i = []
    for c in range(n * cpi):
        i = c // cpi
        inside = max(sims[j, c].item() for j in range(n) if family[j] == family[i])
        outside = max([sims[j, c].item() for j in range(n) if family[j] != family[i]] or [float("-inf")])
        in_t2i.append(inside > outside)
    pct = lambda xs: 100.0 * sum(xs) / len(xs)  # noqa: E731
    out = {"family_i2t": pct(i2t), "family_t2i": pct(t2i), "in_family_i2t": pct(in_i2t), "in_family_t2i": pct(in_t2i)}
    out.update({f"family_{d}_{k}": pct(v) for (d, k), v in pairs.items() if v})
    out.update(literal_winoground(sims, family, kind, cpi))
    return out


def literal_winoground(sims, family, kind, cpi):
    """Winoground's three scores, one item (two images, their k-th captions) at a time, as its paper defines them."""
    n = len(family)
    text, image, group, by_kind = [], [], [], {k: [] for k in KINDS}
    for i in range(n):
        for j in range(i + 1, n):
            if family[i] != family[j]:
                continue
            for k in range(cpi):
                c0, c1 = i * cpi + k, j * cpi + k
                t = sims[i, c0] > sims[i, c1] and sims[j, c1] > sims[j, c0]  # each image prefers its caption
                m = sims[i, c0] > sims[j, c0] and sims[j, c1] > sims[i, c1]  # each caption prefers its image
                text.append(bool(t))
                image.append(bool(m))
                group.append(bool(t and m))
                by_kind[kind(i, j)].append(bool(t and m))
    if not text:
        return {}
    pct = lambda xs: 100.0 * sum(xs) / len(xs)  # noqa: E731
    out = {"winoground_text": pct(text), "winoground_image": pct(image), "winoground_group": pct(group)}
    out.update({f"winoground_group_{k}": pct(v) for k, v in by_kind.items() if v})
    return out


def random_labels(n_families, seed, partial=True):
    g = torch.Generator().manual_seed(seed)
    family, variants, swapped = [], [], []
    for f in range(n_families):
        size = 4 if not partial or f % 3 else int(torch.randint(1, 4, (1,), generator=g))  # some incomplete
        attr = ("colour", "texture", "size")[int(torch.randint(3, (1,), generator=g))]
        for v in VARIANTS[:size]:
            family.append(100 + f)
            variants.append(v)
            swapped.append(attr)
    labels = FamilyLabels(torch.tensor(family), torch.tensor([BITS[v] for v in variants]), swapped)
    return labels, family, variants, swapped


@pytest.mark.parametrize("cpi", [1, 5])
@pytest.mark.parametrize("n_families, seed, quantise", [(1, 0, False), (6, 1, False), (9, 2, True), (25, 3, True)])
def test_matches_literal(cpi, n_families, seed, quantise):
    labels, family, variants, swapped = random_labels(n_families, seed)
    n = len(family)
    g = torch.Generator().manual_seed(seed)
    sims = torch.randn(n, n * cpi, generator=g)
    sims += 1.5 * torch.eye(n).repeat_interleave(cpi, dim=1) * torch.rand(1, generator=g)
    if quantise:  # many ties, which count against the model
        sims = (sims * 2).round() / 2
    got, expected = family_accuracy(sims, labels, cpi), literal_family(sims, family, variants, swapped, cpi)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_perfect_and_constant_scores():
    labels, *_ = random_labels(8, 4, partial=False)
    n = labels.family.shape[0]
    perfect = torch.eye(n).repeat_interleave(5, dim=1)  # (N, 5N): own captions 1, every other 0
    assert all(v == 100.0 for v in family_accuracy(perfect, labels).values())
    constant = torch.zeros(n, 5 * n)  # every score ties: nothing is a hit
    assert all(v == 0.0 for v in family_accuracy(constant, labels).values())


def test_bag_of_words_scores_families_but_not_members():
    # A model that knows each scene's family but nothing within it: in the family always, chance inside.
    labels, *_ = random_labels(50, 5, partial=False)
    n = labels.family.shape[0]
    same = (labels.family[:, None] == labels.family[None, :]).float().repeat_interleave(5, dim=1)
    sims = same + 1e-3 * torch.rand(n, 5 * n, generator=torch.Generator().manual_seed(0))
    got = family_accuracy(sims, labels)
    assert got["in_family_i2t"] == got["in_family_t2i"] == 100.0
    assert 10 < got["family_i2t"] < 45 and 10 < got["family_t2i"] < 45


def test_chance_levels():
    labels, *_ = random_labels(10, 6, partial=False)
    chance = family_chance(labels)
    assert chance["family_i2t"] == pytest.approx(25.0) and chance["family_t2i_role"] == 50.0
    assert chance["in_family_t2i"] == pytest.approx(100 * 4 / 40)
    assert (chance["winoground_text"], chance["winoground_image"]) == (25.0, 25.0)
    assert chance["winoground_group"] == pytest.approx(100 / 6)


def test_winoground_chance_is_what_random_scores_reach():
    # 500 families of scores drawn at random (15,000 items): the measured scores approach the stated chance
    labels, *_ = random_labels(500, 8, partial=False)
    n = labels.family.shape[0]
    sims = torch.rand(n, 5 * n, generator=torch.Generator().manual_seed(8))
    got, chance = family_accuracy(sims, labels), family_chance(labels)
    for key in ("winoground_text", "winoground_image", "winoground_group", "winoground_group_role"):
        assert got[key] == pytest.approx(chance[key], abs=1.5), key


def test_winoground_scores_a_hand_made_pair():
    # two images of one family, one caption each: image 0 prefers its caption, image 1 does not
    labels = FamilyLabels(torch.tensor([1, 1]), torch.tensor([0, 2]), ["colour", "colour"])
    sims = torch.tensor([[0.9, 0.2],    # image 0: own caption 0.9 > 0.2
                         [0.5, 0.4]])   # image 1: caption 0 (0.5) beats its own (0.4)
    got = family_accuracy(sims, labels, captions_per_image=1)
    # text: needs both images right -> 0; image: caption 0 prefers image 0 (0.9 > 0.5) and caption 1
    # prefers image 1 (0.4 > 0.2) -> 100; group -> 0
    assert (got["winoground_text"], got["winoground_image"], got["winoground_group"]) == (0.0, 100.0, 0.0)
    assert got["winoground_group_role"] == 0.0 and "winoground_group_colour" not in got


def test_kind_matrix_names_each_swap():
    labels = FamilyLabels(torch.tensor([7, 7, 7, 7, 8]), torch.tensor([0, 1, 2, 3, 0]),
                          ["size", "size", "size", "size", "colour"])
    kind = labels.kind_matrix()
    name = lambda i, j: KINDS[kind[i, j]] if kind[i, j] >= 0 else None  # noqa: E731
    assert [name(0, j) for j in range(5)] == [None, "size", "role", "both", None]
    assert name(1, 2) == "both" and name(1, 3) == "role" and name(2, 3) == "size"


def test_mismatched_shapes_are_refused():
    labels, *_ = random_labels(3, 7, partial=False)
    with pytest.raises(ValueError, match="does not match"):
        family_accuracy(torch.zeros(5, 25), labels)


@pytest.fixture(scope="module")
def generated_test():
    from data_prep.synthetic import generate

    return generate(n_train=4, n_val=4, n_test=40, progress=False)["test"]


def test_labels_of_a_generated_split(generated_test):
    labels = family_labels(generated_test)
    scenes = [json.loads(s) for s in generated_test["scene"]]
    assert labels.family.tolist() == list(generated_test["family"])
    assert [VARIANTS[v] for v in labels.variant.tolist()] == [s["variant"] for s in scenes]
    assert family_labels(generated_test.remove_columns(["scene"])) is None  # Flickr30K-like: no families


def test_bag_of_words_reference_finds_families_not_members(generated_test):
    labels = family_labels(generated_test)
    sims = bag_of_words_similarity(generated_test)
    got = family_accuracy(sims, labels)
    assert got["in_family_i2t"] == 100.0 and got["in_family_t2i"] == 100.0
    # inside a family every bag is the same: only the tie-breaking noise decides
    n = len(generated_test)
    words = sims - 1e-4 * torch.rand(sims.shape, generator=torch.Generator().manual_seed(0))
    same = labels.family[:, None] == labels.family[None, :]
    assert torch.allclose(words[same.repeat_interleave(5, dim=1)], torch.ones(()), atol=1e-5)
    assert sims.shape == (n, 5 * n)
