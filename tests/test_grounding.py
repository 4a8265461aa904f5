"""hat_min.tutorial.grounding: the word finder on hand-written tokens, cell coverage against a pixel count, the
attention peaks against a literal loop, the definition on hand-made features, one tiny model end to end."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from data_prep.synthetic import build, generate
from hat_min.evaluation.data import load_splits
from hat_min.tutorial.grounding import (Word, box_mask, cell_coverage, find_words, grounding, pair_records, peak_regions, summarise, true_pairs, word_records)


def _scene(subject, obj, boxes=None, size=64):
    """A scene record with the colour and shape of each group (other attributes do not matter here)."""
    return {"subject": dict(zip(("colour", "shape"), subject)), "object": dict(zip(("colour", "shape"), obj)),
            "boxes": boxes or {"subject": [], "object": []}, "image_size": size}


# ----------------------------------------------------------------------------- words
def test_find_words_reads_synonyms_plurals_and_two_word_shapes():
    tokens = ["[CLS]", "two", "red", "discs", "above", "a", "Blue", "plus", "sign", "with", "spots", "[SEP]"]
    words = find_words(tokens, _scene(("red", "circle"), ("blue", "cross")))
    assert words == [Word(2, "red", "colour", "subject"), Word(3, "discs", "shape", "subject"),
                     Word(6, "blue", "colour", "object"), Word(7, "plus sign", "shape", "object")]


def test_find_words_joins_wordpiece_pieces_at_the_first_one():
    tokens = ["[CLS]", "three", "pur", "##ple", "tri", "##ang", "##les", "below", "a", "star", "[SEP]"]
    words = find_words(tokens, _scene(("green", "star"), ("purple", "triangle")))
    assert words == [Word(2, "purple", "colour", "object"), Word(4, "triangles", "shape", "object"),
                     Word(9, "star", "shape", "subject")]


def test_find_words_skips_words_of_both_groups_or_neither():
    tokens = ["[CLS]", "a", "red", "square", "over", "two", "green", "squares", "[SEP]"]
    assert find_words(tokens, _scene(("red", "square"), ("yellow", "square"))) == [
        Word(2, "red", "colour", "subject")]  # both squares: no shape word; green names neither group


def test_find_words_on_generated_captions_with_the_real_tokenizer():
    from hat_min import HATConfig
    from hat_min.encoders import load_tokenizer

    tok = load_tokenizer(HATConfig.preset("tiny"))
    split = generate(n_train=4, n_val=4, n_test=8, seed=3, progress=False)["test"]
    for scene, captions in zip(map(json.loads, split["scene"]), split["captions"]):
        same_shape = scene["subject"]["shape"] == scene["object"]["shape"]
        for caption in captions:
            words = find_words(tok.convert_ids_to_tokens(tok(caption)["input_ids"]), scene)
            # colours always differ between the groups; shapes are named once per group unless they coincide
            assert sorted((w.kind, w.group) for w in words) == sorted(
                [("colour", "object"), ("colour", "subject")] + ([] if same_shape else
                                                                  [("shape", "object"), ("shape", "subject")]))


# ----------------------------------------------------------------------------- coverage
def _pixel_count(boxes, size, side, view=1.0):
    """Coverage of each cell by counting its pixels one at a time (cells of whole pixels)."""
    step, margin = round(size * view / side), round(size * (1 - view) / 2)
    out = []
    for cy in range(side):
        for cx in range(side):
            pixels = [(x + 0.5, y + 0.5) for y in range(margin + cy * step, margin + (cy + 1) * step)
                      for x in range(margin + cx * step, margin + (cx + 1) * step)]
            inside = [any(x0 <= px < x1 and y0 <= py < y1 for x0, y0, x1, y1 in boxes) for px, py in pixels]
            out.append(sum(inside) / len(pixels))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("side,view", [(1, 1.0), (4, 1.0), (8, 1.0), (2, 0.5), (4, 0.5)])
def test_cell_coverage_matches_a_pixel_count(side, view):
    boxes = [[1.2, 0.0, 7.5, 5.3], [6.0, 10.0, 16.0, 16.0], [10.4, 2.6, 13.1, 12.9]]
    torch.testing.assert_close(cell_coverage(box_mask(boxes, 16), side, view), _pixel_count(boxes, 16, side, view))


@pytest.mark.parametrize("side", [1, 2, 4, 8, 16])
def test_chance_is_the_boxes_share_of_the_image(side):
    mask = box_mask([[0, 0, 8, 8], [4, 4, 12, 12]], 16)  # overlapping: union 64 + 64 - 16 pixels
    assert int(mask.sum()) == 112
    assert cell_coverage(mask, side).mean().item() == pytest.approx(112 / 256)


def test_cell_coverage_refuses_more_cells_than_pixels():
    with pytest.raises(ValueError, match="cells a side"):
        cell_coverage(torch.zeros(8, 8, dtype=torch.bool), 16)


# ----------------------------------------------------------------------------- attention peaks
def _literal_peak(regions, words, w, direction, lam):
    """The peak region of word w, one scalar at a time in float64, from the SCAN formulas (hat_min/scan.py)."""
    R, W = regions.shape[0], words.shape[0]
    s = [[float(regions[r].double() @ words[k].double()) for k in range(W)] for r in range(R)]  # s[r][k]
    leaky = [[F.leaky_relu(torch.tensor(v), 0.1).item() for v in row] for row in s]
    if direction == "i2t":  # regions query the words; each word's column normalised over the regions
        norm = [math.sqrt(sum(leaky[r][k] ** 2 for r in range(R))) + 1e-8 for k in range(W)]
        weight = [math.exp(lam * leaky[r][w] / norm[w]) / sum(math.exp(lam * leaky[r][k] / norm[k]) for k in range(W))
                  for r in range(R)]  # region r's weight on word w
    else:  # the words query the regions; each region's column normalised over the words
        norm = [math.sqrt(sum(leaky[r][k] ** 2 for k in range(W))) + 1e-8 for r in range(R)]
        e = [math.exp(lam * leaky[r][w] / norm[r]) for r in range(R)]
        weight = [v / sum(e) for v in e]  # word w's weight on region r
    return max(range(R), key=lambda r: (weight[r], -r))  # ties: the lower region


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
@pytest.mark.parametrize("lam", [1.0, 9.0])
def test_peak_regions_match_a_literal_loop(direction, lam):
    g = torch.Generator().manual_seed(5)
    image = [torch.randn(16, 6, generator=g), torch.randn(4, 6, generator=g)]
    text = [torch.randn(9, 6, generator=g) for _ in image]
    for t in text:
        t[7:] = 1e3  # padding must not matter
    mask = torch.tensor([1] * 7 + [0, 0])
    peaks = peak_regions(image, text, mask, direction, lam)
    assert [p.shape for p in peaks] == [(7,), (7,)]
    for level, p in enumerate(peaks):
        assert p.tolist() == [_literal_peak(image[level], text[level][:7], w, direction, lam) for w in range(7)]


def test_peak_regions_break_ties_to_the_first_region():
    image, text = [torch.ones(4, 3)], [torch.randn(5, 3, generator=torch.Generator().manual_seed(0))]
    for direction in ("i2t", "t2i"):
        assert peak_regions(image, text, torch.ones(5), direction)[0].tolist() == [0] * 5


# ----------------------------------------------------------------------------- the definition
def test_pair_records_score_the_peak_cell_against_each_group():
    # 2 x 2 cells of 32 px: the subject fills cell 0 and half of cell 1, the object fills cell 3
    boxes = {"subject": [[0, 0, 32, 32], [32, 0, 48, 32]], "object": [[32, 32, 64, 64]]}
    scene = _scene(("red", "circle"), ("blue", "square"), boxes)
    tokens = ["[CLS]", "two", "red", "disc", "##s", "above", "a", "blue", "square", "[SEP]"]
    aim = {2: 1, 3: 3, 7: 3, 8: 0}  # token -> the cell it points at: red half on its own group, blue wholly,
    text = torch.zeros(len(tokens), 4)  # discs and square on the other group; the rest point nowhere
    for token, cell in aim.items():
        text[token, cell] = 1.0
    image = [5 * torch.eye(4), torch.ones(1, 4)]  # level 0: one direction per cell; level 1: one 1 x 1 cell
    records = pair_records(image, [text, text], torch.ones(len(tokens)), tokens, scene)
    assert len(records) == 2 * 2 * 4  # levels x directions x words
    got = {(r["level"], r["direction"], r["word"]): (r["own"], r["other"], r["chance"], r["chance_other"])
           for r in records}
    assert {r["best"] for r in records if r["level"] == 0} == {1.0}  # each group fills a cell
    for direction in ("i2t", "t2i"):
        assert got[0, direction, "red"] == (0.5, 0.0, 0.375, 0.25)
        assert got[0, direction, "discs"] == (0.0, 1.0, 0.375, 0.25)
        assert got[0, direction, "blue"] == (1.0, 0.0, 0.25, 0.375)
        assert got[0, direction, "square"] == (0.0, 1.0, 0.25, 0.375)
        assert got[1, direction, "red"] == (0.375, 0.25, 0.375, 0.25)  # one cell: the peak is the whole image
    table = summarise(records).set_index(["level", "direction", "kind"])
    assert table.loc[(0, "i2t", "all"), ["words", "on_own_group", "on_other_group"]].tolist() == [4, 37.5, 50.0]
    assert table.loc[(0, "t2i", "colour"), ["on_own_group", "on_other_group", "chance"]].tolist() == [75.0, 0.0, 31.25]
    assert table.loc[(0, "t2i", "shape"), ["on_own_group", "on_other_group"]].tolist() == [0.0, 100.0]
    assert table.loc[(1, "i2t", "all"), "grid"] == 1


# ----------------------------------------------------------------------------- a model on a split
@pytest.fixture(scope="module")
def scenes_split(tmp_path_factory):
    path = build(tmp_path_factory.mktemp("grounding") / "synthetic", n_train=4, n_val=4, n_test=8, seed=0,
                 progress=False)
    return load_splits(path)["test"]


def test_true_pairs_are_seeded_distinct_true_pairs(scenes_split):
    pairs = true_pairs(scenes_split, n=5, seed=1)
    assert pairs == true_pairs(scenes_split, n=5, seed=1) and len({row for row, _ in pairs}) == 5
    assert all(j // 5 == row for row, j in pairs)
    assert len(true_pairs(scenes_split, n=100)) == len(scenes_split)


def test_grounding_of_a_tiny_model_end_to_end(tiny_model, scenes_split):
    records = word_records(tiny_model, scenes_split, n_pairs=4, progress=False)
    scenes = [json.loads(s) for s in scenes_split["scene"]]
    for r in records:  # chance: the share of the image under the group's boxes (64 px, grids of 16, 8, 4, 2 cells)
        share = box_mask(scenes[r["row"]]["boxes"][r["group"]], 64).double().mean().item()
        assert r["chance"] == pytest.approx(share) and r["caption"] // 5 == r["row"]
    table = grounding(tiny_model, scenes_split, n_pairs=4, progress=False)
    assert list(table.columns) == ["level", "grid", "direction", "kind", "words", "on_own_group", "on_other_group",
                                   "chance", "chance_other", "best_cell"]
    assert len(table) == 3 * 2 * 3 and table["grid"].tolist()[::6] == [8, 4, 2]
    values = table[["on_own_group", "on_other_group", "chance", "chance_other", "best_cell"]].to_numpy()
    assert (values >= 0).all() and (values <= 100).all() and (table["words"] > 0).all()
    assert (table["on_own_group"] <= table["best_cell"]).all() and (table["chance"] <= table["best_cell"]).all()
    mismatched = word_records(tiny_model, scenes_split, pairs=[(0, 5), (1, 0)], progress=False)
    assert {(r["row"], r["caption"]) for r in mismatched} <= {(0, 5), (1, 0)}  # words of neither group left out


def test_grounding_needs_scene_boxes(tiny_model, scenes_split):
    with pytest.raises(ValueError, match="scene"):
        word_records(tiny_model, scenes_split.remove_columns("scene"), n_pairs=2, progress=False)


def test_view_boxes_follow_the_evaluation_resize_and_centre_crop():
    from hat_min.tutorial.grounding import view_boxes

    scene = _scene(("red", "star"), ("blue", "circle"), {"subject": [[0.0, 8.0, 32.0, 40.0]],
                                                          "object": [[48.0, 60.0, 64.0, 64.0]]}, size=64)
    assert view_boxes(scene, 64) == {"subject": [[0.0, 8.0, 32.0, 40.0]], "object": [[48.0, 60.0, 64.0, 64.0]]}
    # 224 px seen as the paper does: Resize(256), CenterCrop(224): x4, 16 px cut on each side, clipped to the view
    big = view_boxes(scene, 224, 256 / 224)
    assert big["subject"] == [[0.0, 16.0, 112.0, 144.0]] and big["object"] == [[176.0, 224.0, 224.0, 224.0]]
