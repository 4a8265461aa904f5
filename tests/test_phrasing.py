"""The held-out grammar (data_prep.phrasing): never in training or pretraining data, never the generator's, true to its scene.

The checks run over generated data, not over the grammar's tables alone: every word of every
training, validation and text-pretraining caption is among the generator's words, and none of
those is a word of the held-out grammar.
"""
import collections
import json
import re
from pathlib import Path

import numpy as np
import pytest

from data_prep import PHRASING_SPLITS, phrasing, synthetic
from data_prep.captions import _COUNT_WORDS, _RELATION_WORDS, COLOURS, SHAPE_OF, parse_caption

SMALL = dict(n_train=2000, n_val=100, n_test=200, seed=3)


@pytest.fixture(scope="module")
def data():
    return synthetic.generate(**SMALL, progress=False)


def _all_words(captions) -> collections.Counter:
    return collections.Counter(w for text in captions for w in phrasing.caption_words(text))


def test_training_and_validation_captions_use_only_the_generators_words(data):
    words = _all_words(c for split in ("train", "val", "test") for caps in data[split]["captions"] for c in caps)
    assert set(words) <= phrasing.GENERATOR_WORDS, set(words) - phrasing.GENERATOR_WORDS
    assert not set(words) & phrasing.NEW_WORDS
    assert not phrasing.NEW_WORDS & phrasing.GENERATOR_WORDS and phrasing.FRAME_WORDS <= phrasing.NEW_WORDS


def test_text_pretraining_captions_use_none_of_the_held_out_words(monkeypatch):
    # the captions the shipped text weights were pretrained on (hat_min/weights/scenes_minilm.json: 8,000
    # scenes, seed 1), recorded as hat_min.weights.text.labelled_captions writes them
    import data_prep.captions as captions
    from hat_min.encoders import load_tokenizer
    from hat_min.config import HATConfig
    from hat_min.weights import text

    card = json.loads((Path(text.__file__).parent / "scenes_minilm.json").read_text())
    written, make = [], captions.make_captions

    def recorded(*args, **kwargs):  # make_captions, keeping what it wrote
        caps = make(*args, **kwargs)
        written.extend(caps)
        return caps

    monkeypatch.setattr(captions, "make_captions", recorded)
    text.labelled_captions(card["data"]["scenes"], card["data"]["seed"], load_tokenizer(HATConfig.preset("minilm")),
                           progress=False)
    assert len(written) == card["data"]["captions"]
    words = _all_words(written)
    assert set(words) <= phrasing.GENERATOR_WORDS and not set(words) & phrasing.NEW_WORDS


def test_phrasing_splits_are_the_test_images_with_other_captions(data):
    test = data["test"]
    for name in PHRASING_SPLITS:
        split = data[name]
        for column in ("image_id", "filename", "scene", "family"):
            assert split[column] == test[column], (name, column)
        assert split.features == test.features
        assert all(len(set(c.lower().rstrip(".") for c in caps)) == 5 for caps in split["captions"])
        held_out = {c for caps in split["captions"] for c in caps}
        assert not held_out & {c for caps in test["captions"] for c in caps}


def test_phrasing_split_captions_redraws_each_split_and_one_kind_at_a_time(data):
    scenes = data["test"]["scene"]
    for name in PHRASING_SPLITS:  # the one function generate writes them with
        assert synthetic.phrasing_split_captions(name, scenes, SMALL["seed"]) == data[name]["captions"]
    assert synthetic.phrasing_split_captions("test_words", scenes, SMALL["seed"], phrasing.WORD_KINDS) == \
        data["test_words"]["captions"]
    colour = synthetic.phrasing_split_captions("test_words", scenes[:20], SMALL["seed"], ("colour",))
    assert colour != data["test_words"]["captions"][:20]
    new_colours = {w for ws in phrasing._NEW_COLOUR.values() for w in ws}
    assert any(w in new_colours for caps in colour for c in caps for w in phrasing.caption_words(c))
    with pytest.raises(ValueError, match="'test' is not a phrasing split; choose one of"):
        synthetic.phrasing_split_captions("test", scenes, 0)


def test_no_held_out_caption_is_a_caption_of_the_generators_grammar(data):
    for name in PHRASING_SPLITS:
        for caps in data[name]["captions"]:
            for c in caps:
                with pytest.raises(ValueError, match="not a caption of the synthetic grammar"):
                    parse_caption(c)


def test_every_caption_has_a_new_frame_and_test_words_has_new_words(data):
    for caps in data["test_frames"]["captions"]:
        for c in caps:
            words = phrasing.caption_words(c)
            assert words & phrasing.FRAME_WORDS, c
            assert words - phrasing.FRAME_WORDS <= phrasing.GENERATOR_WORDS, c  # known words only
    for caps in data["test_words"]["captions"]:
        for c in caps:
            words = phrasing.caption_words(c)
            assert words & phrasing.FRAME_WORDS and not words & set(COLOURS), c  # colours always a synonym
            assert words & (phrasing.NEW_WORDS - phrasing.FRAME_WORDS), c


# ----------------------------------------------------------------------------- a reader of the new frames
def _reader():
    """Regexes of the new frames, a group phrase read back to {colour, shape, count}: written from the tables."""
    colour_of = {c: c for c in COLOURS} | {w: c for c, ws in phrasing._NEW_COLOUR.items() for w in ws}
    shape_of = dict(SHAPE_OF) | {w: s for s, pairs in phrasing._NEW_SHAPE.items() for p in pairs for w in p}
    count_of = {w: n for table in (_COUNT_WORDS, phrasing._NEW_COUNT) for n, ws in table.items() for w in ws}
    alt = lambda ws: "(?:" + "|".join(re.escape(w) for w in sorted(ws, key=len, reverse=True)) + ")"  # noqa: E731
    group = rf"(?:{alt(count_of)}) .*?(?:{alt(colour_of)}).*? (?:{alt(shape_of)})"
    relation = {}
    for table in (_RELATION_WORDS, phrasing._NEW_RELATION):
        for rel, words in table.items():
            for direction in ("fwd", "back"):
                relation.update({w: (rel, direction) for w in words[direction]})
    rel_re = f"(?P<rel>{alt(relation)})"
    halves = {h: rel for rel, pair in phrasing._HALVES.items() for h in pair}
    frames = []
    for frame in phrasing.FRAMES:
        body = re.escape(frame)
        for name, pattern in (("F", f"(?P<F>{group})"), ("S", f"(?P<S>{group})"), ("fwd", rel_re), ("back", rel_re),
                              ("half_F", f"(?P<half>{alt(halves)})"), ("half_S", alt(halves)),
                              ("be_S", "(?:is|are)")):
            body = body.replace(re.escape("{" + name + "}"), pattern)
        body = re.sub(r"\\\{v_[FS]:(\w+)\\\}", r"\1s?", body)  # the escaped "{v_F:sit}": "sits?"
        frames.append((re.compile(body), "fwd" if "{fwd}" in frame else "back" if "{back}" in frame else None))

    def read_group(text):
        colour = next(colour_of[w] for w in sorted(colour_of, key=len, reverse=True) if re.search(rf"\b{w}\b", text))
        shape = next(shape_of[w] for w in sorted(shape_of, key=len, reverse=True) if re.search(rf"\b{w}\b", text))
        count = next(count_of[w] for w in sorted(count_of, key=len, reverse=True) if text.startswith(w + " "))
        return {"colour": colour, "shape": shape, "count": count}

    def read(caption):
        text = caption.lower().rstrip(".")
        for regex, direction in frames:
            m = regex.fullmatch(text)
            if m and not (direction and relation[m["rel"]][1] != direction):  # {fwd} takes "above", {back} "below"
                rel = relation[m["rel"]][0] if direction else halves[m["half"]]
                return rel, read_group(m["F"]), read_group(m["S"])
        raise AssertionError(f"no frame reads {caption!r}")

    return read


def test_every_held_out_caption_describes_its_scene(data):
    read = _reader()
    for name in PHRASING_SPLITS:
        for caps, scene in zip(data[name]["captions"], data[name]["scene"]):
            scene = json.loads(scene)
            want = tuple([scene["relation"]] + [{k: scene[r][k] for k in ("colour", "shape", "count")}
                                                for r in ("subject", "object")])
            for c in caps:
                assert read(c) == want, c


def test_deterministic_in_the_seed():
    scene = json.loads(synthetic.generate(n_train=4, n_val=4, n_test=4, progress=False)["test"][0]["scene"])
    one = phrasing.phrase_captions(scene, np.random.default_rng(5), new_words=True)
    assert one == phrasing.phrase_captions(scene, np.random.default_rng(5), new_words=True)
    assert one != phrasing.phrase_captions(scene, np.random.default_rng(6), new_words=True)


@pytest.mark.parametrize("new_words", [False, True])
def test_frame_of_names_the_frame_that_wrote_each_caption(data, monkeypatch, new_words):
    scenes = [json.loads(s) for s in data["test"]["scene"][:40]]
    for frame in phrasing.FRAMES:
        monkeypatch.setattr(phrasing, "FRAMES", (frame,))  # every caption from this frame alone
        for i, scene in enumerate(scenes):
            for text in phrasing.phrase_captions(scene, np.random.default_rng(i), new_words=new_words):
                assert phrasing.frame_of(text) == frame, text
        monkeypatch.undo()


def test_frame_of_refuses_other_captions(data):
    with pytest.raises(ValueError, match="not a caption of one frame"):
        phrasing.frame_of(data["train"]["captions"][0][0])
    with pytest.raises(ValueError, match="not a caption of one frame"):
        phrasing.frame_of("a red circle and a blue star")


def test_order_rule_holds_in_every_generator_frame_and_in_none_of_the_more_frames():
    from data_prep.captions import _BASE_TEMPLATES, MORE_TEMPLATES

    assert all(phrasing.order_rule(t) is True for t, _ in _BASE_TEMPLATES)
    assert all(phrasing.order_rule(t) is not True for t, _ in MORE_TEMPLATES)
    assert {t: phrasing.order_rule(t) for t, _ in MORE_TEMPLATES if phrasing.order_rule(t) is False} == {
        "{end_F} {be_F} {F} and {end_S} {be_S} {S}": False, "{end_S} {be_S} {S} and {end_F} {be_F} {F}": False,
        "{S} and {fwd} {it_S} {F}": False, "{F} and {back} {it_F} {S}": False}


def test_order_rule_of_the_held_out_frames():
    rule = {f: phrasing.order_rule(f) for f in phrasing.FRAMES}
    assert rule["{F} and {S}, the former {fwd} the latter"] is False  # S stands just before "above", F is placed
    assert rule["{S} and {F}, the latter {fwd} the former"] is True
    assert rule["{fwd} {S} one finds {F}"] is None and rule["{back} {F} one finds {S}"] is None
    assert rule["the {half_F} shows {F} and the {half_S} shows {S}"] is None  # "upper half" is not the generator's
    assert sum(v is True for v in rule.values()) == 6


def _new_words_of(kind: str) -> set[str]:
    """The words of one kind's new synonyms (data_prep.phrasing's tables), less any the generator also writes."""
    table = {"count": phrasing._NEW_COUNT, "size": phrasing._NEW_SIZE, "colour": phrasing._NEW_COLOUR,
             "texture": phrasing._NEW_TEXTURE, "shape": phrasing._NEW_SHAPE, "relation": phrasing._NEW_RELATION}[kind]
    return phrasing._words(table) - phrasing.GENERATOR_WORDS


@pytest.mark.parametrize("kind", phrasing.WORD_KINDS)
def test_new_words_of_one_kind_change_only_that_kind(data, kind):
    """new_words=(kind,): that kind's synonyms wherever it has one, no other kind's, and the scene still read right."""
    # ("lower" is a frame word too: "the lower half shows S")
    others = set().union(*(_new_words_of(k) for k in phrasing.WORD_KINDS if k != kind)) - phrasing.FRAME_WORDS
    read = _reader()
    used = set()
    for i, scene in enumerate(data["test"]["scene"][:60]):
        scene = json.loads(scene)
        want = tuple([scene["relation"]] + [{k: scene[r][k] for k in ("colour", "shape", "count")}
                                            for r in ("subject", "object")])
        for c in phrasing.phrase_captions(scene, np.random.default_rng(i), new_words=(kind,)):
            words = phrasing.caption_words(c)
            assert not words & others, (kind, c)
            used |= words & _new_words_of(kind)
            assert read(c) == want, c
            if kind == "colour":
                assert not words & set(COLOURS), c  # every colour said with a synonym
    assert used, f"no caption used a new {kind} word"


def test_new_words_true_and_false_are_all_kinds_and_none(data):
    """The two splits' modes are unchanged: True is every kind named, False none (the same draws, the same captions)."""
    for i, scene in enumerate(data["test"]["scene"][:20]):
        scene = json.loads(scene)
        assert phrasing.phrase_captions(scene, np.random.default_rng(i), True) == \
            phrasing.phrase_captions(scene, np.random.default_rng(i), phrasing.WORD_KINDS)
        assert phrasing.phrase_captions(scene, np.random.default_rng(i), False) == \
            phrasing.phrase_captions(scene, np.random.default_rng(i), ())


def test_new_words_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match=r"unknown kinds of word \['hue'\]; choose from \['count'"):
        phrasing.new_word_kinds(("colour", "hue"))
    assert phrasing.new_word_kinds("shape") == {"shape"}
