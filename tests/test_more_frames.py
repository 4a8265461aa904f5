"""The generator's optional frames that put the relation first (data_prep.captions.MORE_TEMPLATES, --more-frames).

Off by default, and then the default data is what it was before they existed (the notebooks' numbers
rest on it); on, they are captions of the generator's grammar: parsed back into their scene, with the
generator's words only, none of the held-out grammar's; ``captions.in_more_frame`` tells them from the
generator's ten base frames.
"""
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from data_prep import PHRASING_SPLITS, captions, phrasing, synthetic

ROOT = Path(__file__).resolve().parents[1]
SCENE = {"relation": "above",
         "subject": {"count": 2, "size": "small", "colour": "red", "texture": "striped", "shape": "circle"},
         "object": {"count": 1, "size": "large", "colour": "blue", "texture": "plain", "shape": "star"}}


def test_default_captions_are_the_ones_written_before_the_option_existed():
    # make_captions(SCENE, default_rng(7)) as data_prep/captions.py wrote it at commit cb87cf1
    before = ["A single big blue star at the bottom and a pair of tiny red striped discs at the top.",
              "Two tiny red circles with stripes at the top and a large solid blue star at the bottom.",
              "an image of one big solid blue star at the bottom and two little red striped discs at the top",
              "a single big blue star with two small striped red discs above it",
              "One large plain blue star at the bottom and two tiny red discs with stripes at the top."]
    assert captions.make_captions(SCENE, np.random.default_rng(7)) == before
    assert captions.make_captions(SCENE, np.random.default_rng(7), more_frames=0.0) == before


# the parser's regexes of the MORE_TEMPLATES, per relation
_MORE_REGEXES = {relation: [captions._template_regex(t, np_, relation) for t, np_ in captions.MORE_TEMPLATES]
                 for relation in captions.RELATIONS}


def _is_more(text: str, relation: str) -> bool:
    norm = " ".join(text.lower().rstrip(".").split())
    return any(r.fullmatch(norm) for r in _MORE_REGEXES[relation])


@pytest.fixture(scope="module")
def data():
    return synthetic.generate(n_train=400, n_val=40, n_test=40, seed=5, progress=False, more_frames=0.5)


def test_more_frames_are_parsed_back_into_their_scene(data):
    written, more = 0, 0
    for split in ("train", "val", "test", "test_unseen"):
        for caps, scene in zip(data[split]["captions"], data[split]["scene"]):
            scene = synthetic.json.loads(scene)
            for text in caps:
                parsed = captions.parse_caption(text)
                key = {k: scene[k] for k in ("relation", "subject", "object")}
                assert parsed == key, text
                assert set(captions.group_spans(text)) == {"subject", "object"}
                written += 1
                more += _is_more(text, scene["relation"])
    assert 0.4 < more / written < 0.6, (more, written)  # the share asked for, 0.5


def test_more_frames_use_the_generators_words_and_none_of_the_held_out_grammar(data):
    words = {w for split in ("train", "val", "test") for caps in data[split]["captions"] for c in caps
             for w in phrasing.caption_words(c)}
    assert words <= phrasing.GENERATOR_WORDS and not words & phrasing.NEW_WORDS
    for name in ("test_frames", "test_words"):  # the held-out splits stay held out, and none is the generator's
        for caps in data[name]["captions"]:
            for text in caps:
                with pytest.raises(ValueError):
                    captions.parse_caption(text)


def test_in_more_frame_tells_the_more_frames_from_the_base_ones(data):
    for split in ("train", "val", "test"):
        for caps, scene in zip(data[split]["captions"], data[split]["scene"]):
            relation = synthetic.json.loads(scene)["relation"]
            assert [captions.in_more_frame(c) for c in caps] == [_is_more(c, relation) for c in caps]
            assert [captions.in_more_frame(captions.flip_caption(c)) for c in caps] == [_is_more(c, relation)
                                                                                         for c in caps]
    for split in PHRASING_SPLITS:
        assert not any(captions.in_more_frame(c) for caps in data[split]["captions"] for c in caps)
    assert not captions.in_more_frame("a photo of a dog on a sofa")


def test_share_one_writes_only_more_frames_and_zero_none():
    rng = np.random.default_rng(0)
    for relation in captions.RELATIONS:
        scene = {**SCENE, "relation": relation}
        assert all(_is_more(t, relation) for t in captions.make_captions(scene, rng, n=20, more_frames=1.0))
        assert not any(_is_more(t, relation) for t in captions.make_captions(scene, rng, n=20))


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan"), "half", True])
def test_a_share_outside_0_to_1_is_refused_before_any_work(share):
    with pytest.raises(ValueError, match="more_frames"):
        synthetic.generate(n_train=8, n_val=4, n_test=4, progress=False, more_frames=share)
    with pytest.raises(ValueError, match="more_frames"):
        captions.make_captions(SCENE, np.random.default_rng(0), more_frames=share)


def test_cli_more_frames(tmp_path):
    out = tmp_path / "more"
    base = [sys.executable, "-m", "data_prep.synthetic", "--n-train", "8", "--n-val", "4", "--n-test", "4", "--seed", "3"]
    done = subprocess.run([*base, "--out", str(out), "--more-frames", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    train = datasets.load_from_disk(str(out))["train"]
    assert all(_is_more(c, synthetic.json.loads(s)["relation"]) for caps, s in zip(train["captions"], train["scene"])
               for c in caps)
    assert '"more_frames": 1.0' in (out / "synthetic.json").read_text()
    bad = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--more-frames", "2"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "more_frames" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
