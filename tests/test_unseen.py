"""The unseen-compositions split (test_unseen): held-out attribute pairs in no training or pretraining data.

Checked over generated data, not over the tables alone: the scenes of generated splits, every scene of
the default dataset, the scenes and patch labels the image encoder is pretrained on, and the scenes
the text encoder's pretraining captions describe.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from data_prep import GENERALISATION_SPLITS, UNSEEN_SPLIT, labels, synthetic
from data_prep.captions import HELD_OUT_COMBINATIONS, held_out_combinations, is_unseen, parse_caption

SMALL = dict(n_train=400, n_val=40, n_test=80, seed=5)
WEIGHTS = Path(__file__).resolve().parents[1] / "hat_min" / "weights"


@pytest.fixture(scope="module")
def data():
    return synthetic.generate(**SMALL, progress=False)


def _scenes(split) -> list[dict]:
    return [json.loads(s) for s in split["scene"]]


def _groups(scenes) -> list[dict]:
    return [scene[role] for scene in scenes for role in ("subject", "object")]


def _held_out_literal(group: dict) -> bool:
    # the held-out pairs spelled out, independent of HELD_OUT_COMBINATIONS
    pairs = {("red", "star"), ("green", "circle"), ("blue", "triangle"), ("yellow", "cross"), ("purple", "square"),
             ("orange", "diamond")}
    return (group["colour"], group["shape"]) in pairs or (group["texture"], group["shape"]) in {
        ("striped", "square"), ("dotted", "star")}


def test_held_out_combinations_are_the_documented_ones():
    group = {"count": 1, "size": "small", "colour": "red", "texture": "plain", "shape": "star"}
    assert held_out_combinations(group) == [{"colour": "red", "shape": "star"}]
    assert held_out_combinations({**group, "texture": "dotted"}) == [{"colour": "red", "shape": "star"},
                                                                      {"texture": "dotted", "shape": "star"}]
    assert held_out_combinations({**group, "colour": "blue"}) == []
    for combo in HELD_OUT_COMBINATIONS:
        assert _held_out_literal({**group, "colour": "white", "texture": "plain", **combo})
    readme = " ".join((Path(__file__).resolve().parents[1] / "data_prep" / "README.md").read_text().split())
    for combo in HELD_OUT_COMBINATIONS:  # documented, in the README's words
        assert " ".join(combo[k] for k in ("colour", "texture", "shape") if k in combo) in readme, combo


def test_no_training_validation_or_test_scene_has_a_held_out_combination(data):
    for split in ("train", "val", "test"):
        groups = _groups(_scenes(data[split]))
        assert not any(_held_out_literal(g) for g in groups), split


def test_every_test_unseen_scene_has_one_and_every_word_is_seen_in_training(data):
    scenes = _scenes(data[UNSEEN_SPLIT])
    assert len(scenes) == SMALL["n_test"] and all(is_unseen(s) for s in scenes)
    assert all(any(_held_out_literal(s[r]) for r in ("subject", "object")) for s in scenes)
    # every caption describes its scene, in the generator's grammar
    for row in data[UNSEEN_SPLIT].select(range(24)):
        scene = json.loads(row["scene"])
        for caption in row["captions"]:
            assert parse_caption(caption) == {k: scene[k] for k in ("relation", "subject", "object")}
    # the pairs are new, their attributes are not: every colour, texture and shape of test_unseen occurs in training
    train = _groups(_scenes(data["train"]))
    for field in ("colour", "texture", "shape"):
        assert {g[field] for g in _groups(scenes)} <= {g[field] for g in train}, field
    # the held-out pairs that occur at all: at least one of each kind
    found = {tuple(sorted(c)) for g in _groups(scenes) for c in held_out_combinations(g)}
    assert found == {("colour", "shape"), ("shape", "texture")}


def test_test_unseen_is_whole_new_families_with_their_own_ids(data):
    unseen, test = data[UNSEEN_SPLIT], data["test"]
    assert min(unseen["image_id"]) == 3_000_000 and len(set(unseen["image_id"])) == len(unseen)
    assert not set(unseen["image_id"]) & set(test["image_id"])
    assert all(f.startswith(f"{UNSEEN_SPLIT}/") for f in unseen["filename"])
    families = np.asarray(unseen["family"])
    assert all((families[i : i + 4] == families[i]).all() for i in range(0, len(families), 4))
    variants = [s["variant"] for s in _scenes(unseen)]
    assert variants[:4] == ["base", "binding", "role", "binding+role"]
    keys = {synthetic.scene_key(s) for split in ("train", "val", "test") for s in _scenes(data[split])}
    assert not keys & {synthetic.scene_key(s) for s in _scenes(unseen)}


def test_test_unseen_is_deterministic_and_leaves_the_other_splits_alone(data):
    again = synthetic.generate(**{**SMALL, "n_train": 200}, n_unseen=40, progress=False)
    assert again[UNSEEN_SPLIT]["scene"] == data[UNSEEN_SPLIT]["scene"][:40]  # test_unseen: seed and size only
    assert again["test"]["scene"] == data["test"]["scene"]
    assert list(data) == ["train", "val", "test", *GENERALISATION_SPLITS]


def test_the_default_dataset_has_none_in_its_training_validation_and_test_scenes():
    # every scene of `python -m data_prep.synthetic` (seed 0: 10,000 / 500 / 1,000), sampled as generate samples
    keys = labels.default_scene_keys()
    assert len(keys) == 11_500
    assert not any(_held_out_literal(g) for k in keys for g in json.loads(k)[1:])


def test_the_image_pretraining_data_has_none(monkeypatch):
    # the shipped Swin's pretraining (hat_min/weights/scenes_swin.json): the scenes labelled_scenes draws ...
    card = json.loads((WEIGHTS / "scenes_swin.json").read_text())["data"]
    drawn, real = [], labels.pretraining_scenes

    def recorded(*args, **kwargs):  # pretraining_scenes, keeping what it drew
        drawn.extend(real(*args, **kwargs))
        return list(drawn)

    monkeypatch.setattr(labels, "pretraining_scenes", recorded)
    exclude = labels.default_scene_keys()  # what pretrain() excludes: every scene of the default dataset
    images, patch = labels.labelled_scenes(200, card["seed"], card["image_size"], card["label_grid"],
                                           exclude=exclude, progress=False)
    assert len(drawn) == 200
    # ... whose patch labels (what the encoder is taught) hold no held-out colour-shape or texture-shape pair ...
    colour, shape, texture = (patch[:, labels.LABEL_FIELDS.index(f)] for f in ("colour", "shape", "texture"))
    name = {f: (None, *labels.LABEL_CLASSES[f]) for f in ("colour", "shape", "texture")}
    on = shape > 0
    cells = {(name["colour"][c], name["texture"][t], name["shape"][s])
             for c, t, s in zip(colour[on].tolist(), texture[on].tolist(), shape[on].tolist())}
    assert len(cells) > 50
    assert not any(_held_out_literal({"colour": c, "texture": t, "shape": s}) for c, t, s in cells)
    # ... and all of them (the card's 40,000)
    every = real(card["images"], card["seed"], exclude)
    assert len(every) == card["images"] and every[:200] == drawn
    assert not any(_held_out_literal(g) for _, scene in every for g in (scene["subject"], scene["object"]))


def test_the_text_pretraining_captions_describe_none(monkeypatch):
    # the shipped text weights' pretraining captions (scenes_minilm.json), recorded as labelled_captions writes them
    import data_prep.captions as captions
    from hat_min.config import HATConfig
    from hat_min.encoders import load_tokenizer
    from hat_min.weights import text

    card = json.loads((WEIGHTS / "scenes_minilm.json").read_text())["data"]
    written, make = [], captions.make_captions

    def recorded(scene, rng, *args, **kwargs):  # make_captions, keeping what it wrote
        caps = make(scene, rng, *args, **kwargs)
        written.append((scene, caps))
        return caps

    monkeypatch.setattr(captions, "make_captions", recorded)
    text.labelled_captions(card["scenes"], card["seed"], load_tokenizer(HATConfig.preset("minilm")), progress=False)
    assert sum(len(caps) for _, caps in written) == card["captions"]
    assert not any(_held_out_literal(scene[r]) for scene, _ in written for r in ("subject", "object"))
    for scene, caps in written[::97]:  # the captions say what the scenes hold
        for caption in caps:
            assert parse_caption(caption) == {k: scene[k] for k in ("relation", "subject", "object")}
