"""Tests of data_prep.synthetic: determinism, schema, captions, hard negatives, flips, CLI."""
import collections
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from data_prep import DataPrepError, synthetic

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(n_train=40, n_val=12, n_test=200, image_size=64, seed=0)


@pytest.fixture(scope="module")
def small():
    """A small synthetic DatasetDict shared by the read-only tests."""
    return synthetic.generate(**SMALL, progress=False)


def _raw(ds: datasets.Dataset) -> list[bytes]:
    """The stored image bytes of a split, undecoded."""
    return [x["bytes"] for x in ds.cast_column("image", datasets.Image(decode=False))["image"]]


def _scenes(ds: datasets.Dataset) -> list[dict]:
    return [json.loads(s) for s in ds["scene"]]


def _canonical(scene: dict) -> dict:
    return {k: scene[k] for k in ("relation", "subject", "object")}


def test_same_seed_same_bytes_other_seed_differs(small):
    again = synthetic.generate(**SMALL, progress=False)
    other = synthetic.generate(**{**SMALL, "seed": 1}, progress=False)
    for split in ("train", "val", "test"):
        assert _raw(small[split]) == _raw(again[split])
        assert small[split]["captions"] == again[split]["captions"]
        assert small[split]["scene"] == again[split]["scene"]
        assert _raw(small[split]) != _raw(other[split])
        assert small[split]["captions"] != other[split]["captions"]


def test_test_split_does_not_depend_on_train_size(small):
    bigger = synthetic.generate(**{**SMALL, "n_train": 60}, progress=False)
    assert _raw(bigger["test"]) == _raw(small["test"])
    assert bigger["test"]["captions"] == small["test"]["captions"]


def test_schema_and_split_sizes(small):
    assert set(small) == {"train", "val", "test", "test_unseen", "test_frames", "test_words"}
    assert {k: len(v) for k, v in small.items()} == {"train": 40, "val": 12, "test": 200, "test_unseen": 200,
                                                     "test_frames": 200, "test_words": 200}
    feats = small["train"].features
    assert isinstance(feats["image"], datasets.Image)
    assert feats["captions"] == datasets.List(datasets.Value("string"))
    assert feats["image_id"] == datasets.Value("int64") and feats["family"] == datasets.Value("int64")
    assert feats["filename"] == datasets.Value("string") and feats["scene"] == datasets.Value("string")
    ids = [i for name in ("train", "val", "test") for i in small[name]["image_id"]]
    names = [n for name in ("train", "val", "test") for n in small[name]["filename"]]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)  # the phrasing splits repeat the test rows


def test_images_are_64px_png_with_a_varied_background(small):
    raw = _raw(small["test"])[0]
    assert raw.startswith(b"\x89PNG")
    img = small["test"][0]["image"]
    assert img.size == (64, 64) and img.mode == "RGB"
    corner = np.asarray(img, dtype=float)[:2].reshape(-1, 3)
    assert corner.mean() > 170  # light background
    assert np.ptp(np.asarray(img, dtype=float)) > 100  # objects stand out


def test_image_size_option():
    dd = synthetic.generate(n_train=2, n_val=1, n_test=1, image_size=96, progress=False)
    assert dd["train"][0]["image"].size == (96, 96)
    assert json.loads(dd["train"][0]["scene"])["image_size"] == 96


def test_five_distinct_captions_per_image(small):
    for split in small.values():
        for caps in split["captions"]:
            assert len(caps) == 5
            assert len({c.lower().rstrip(".") for c in caps}) == 5


def test_every_caption_describes_its_scene(small):
    """Parsing a caption gives back exactly the image's scene: both phrasings of every relation
    ("A above B" and "B below A"), all synonyms, binding of attributes to their group. (The held-out
    phrasings of test_frames / test_words are read in tests/test_phrasing.py.)"""
    for split in (small[name] for name in ("train", "val", "test")):
        for scene, caps in zip(_scenes(split), split["captions"]):
            for cap in caps:
                assert synthetic.parse_caption(cap) == _canonical(scene), cap


def test_captions_vary_in_wording_and_use_plain_words(small):
    caps = [c for split in small.values() for cs in split["captions"] for c in cs]
    words = collections.Counter(w for c in caps for w in re.findall(r"[a-z]+", c.lower()))
    for synonyms in (("above", "over", "below", "under", "beneath"), ("left", "right"), ("large", "big"),
                     ("small", "little"), ("circle", "disc"), ("dotted", "spotted", "dots")):
        assert all(words[w] > 0 for w in synonyms), synonyms
    assert set("".join(words)) <= set("abcdefghijklmnopqrstuvwxyz")


def test_splits_are_disjoint_and_scenes_unique(small):
    keys = {s: [synthetic.scene_key(x) for x in _scenes(d)] for s, d in small.items()}
    for s, k in keys.items():
        assert len(set(k)) == len(k), s
    assert not set(keys["train"]) & set(keys["val"])
    assert not set(keys["train"]) & set(keys["test"])
    assert not set(keys["val"]) & set(keys["test"])
    assert not set(keys["test_unseen"]) & set(keys["train"] + keys["val"] + keys["test"])


def test_layout_matches_relation_without_overlaps(small):
    for scene in _scenes(small["test"]) + _scenes(small["train"]):
        side, boxes = scene["image_size"], scene["boxes"]
        assert [len(boxes["subject"]), len(boxes["object"])] == [scene["subject"]["count"], scene["object"]["count"]]
        axis = 1 if scene["relation"] == "above" else 0  # y for above, x for left of
        assert max(b[axis + 2] for b in boxes["subject"]) + 4 <= min(b[axis] for b in boxes["object"])
        allb = boxes["subject"] + boxes["object"]
        assert all(0 <= v <= side for b in allb for v in b)
        for i, a in enumerate(allb):
            for b in allb[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], scene


def test_families_hold_binding_and_role_swaps_in_the_test_split(small):
    by_family = collections.defaultdict(list)
    for scene, fam in zip(_scenes(small["test"]), small["test"]["family"]):
        by_family[fam].append(scene)
    assert len(by_family) == 50
    for members in by_family.values():
        base, binding, role, both = members
        attr = base["swapped"]
        assert [m["variant"] for m in members] == list(synthetic.VARIANTS)
        assert binding["relation"] == role["relation"] == base["relation"]
        assert binding["subject"] == {**base["subject"], attr: base["object"][attr]}
        assert binding["object"] == {**base["object"], attr: base["subject"][attr]}
        assert (role["subject"], role["object"]) == (base["object"], base["subject"])
        assert (both["subject"], both["object"]) == (binding["object"], binding["subject"])
        assert len({synthetic.scene_key(m) for m in members}) == 4


def _concept_bag(scene: dict) -> collections.Counter:
    """What a bag-of-words model can know about an image: its attribute words, unbound."""
    bag = collections.Counter(f"{k}={scene[r][k]}" for r in ("subject", "object") for k in synthetic.ATTRIBUTES)
    bag["axis=" + scene["relation"]] += 1
    return bag


def _words(text: str) -> collections.Counter:
    return collections.Counter(re.findall(r"[a-z]+", text.lower()))


def _cosine(a: collections.Counter, b: collections.Counter) -> float:
    dot = sum(a[k] * b[k] for k in a)
    return dot / np.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def _pick_rate(pairs, score) -> float:
    """Share of (query caption, right image, wrong image) trials won; ties count one half."""
    wins = [1.0 if r > w else 0.5 if r == w else 0.0 for r, w in (score(i, j, k) for i, j, k in pairs)]
    return float(np.mean(wins))


def test_bag_of_words_cannot_solve_hard_negatives_but_structure_can(small):
    """The point of the dataset: hard negatives share the bag of words, so any BoW model is at
    chance (50 %) on them, while it is near perfect on random negatives; reading the structure
    of the caption (binding + relation direction) solves them all. Fails if the generator
    stops producing swapped twins."""
    scenes, caps = _scenes(small["test"]), small["test"]["captions"]
    keys, bags = [synthetic.scene_key(s) for s in scenes], [_concept_bag(s) for s in scenes]
    n = len(scenes)
    twins = [(i, j) for i in range(n) for j in range(n) if i != j and bags[i] == bags[j] and keys[i] != keys[j]]
    assert len({i for i, _ in twins}) >= 0.9 * n  # nearly every test image has a BoW-identical twin
    rng = np.random.default_rng(0)
    randoms = [(i, int(j)) for i in range(n) for j in rng.choice(n, 3) if bags[i] != bags[j]]

    def trials(pairs):
        return [(i, j, k) for i, j in pairs for k in range(5)]

    def oracle_bow(i, j, k):  # caption words vs the image's (unbound) attribute words
        return sum((bags[i] & _words(caps[i][k])).values()), sum((bags[j] & _words(caps[i][k])).values())

    def learned_bow(i, j, k):  # caption vs the other captions of each image, bag of words
        ref_i = sum((_words(c) for m, c in enumerate(caps[i]) if m != k), collections.Counter())
        ref_j = sum((_words(c) for c in caps[j]), collections.Counter())
        query = _words(caps[i][k])
        return _cosine(query, ref_i), _cosine(query, ref_j)

    def structure(i, j, k):  # parse who is where and which attribute belongs to whom
        parsed = synthetic.scene_key(synthetic.parse_caption(caps[i][k]))
        return float(parsed == keys[i]), float(parsed == keys[j])

    assert _pick_rate(trials(twins), oracle_bow) == 0.5
    assert 0.35 <= _pick_rate(trials(twins), learned_bow) <= 0.6
    assert _pick_rate(trials(randoms), learned_bow) >= 0.9
    assert _pick_rate(trials(twins), structure) == 1.0


@pytest.mark.parametrize("before, after", [
    ("two red circles to the left of a blue star", "two red circles to the right of a blue star"),
    ("A blue star right of two red circles.", "A blue star left of two red circles."),
    ("a cat on the left and a dog on the right", "a cat on the right and a dog on the left"),
    ("Left: the LEFTMOST box, then the rightmost", "Right: the RIGHTMOST box, then the leftmost"),
    ("a red square above a green cross", "a red square above a green cross"),
    ("bright lights", "bright lights"),
])
def test_flip_caption(before, after):
    assert synthetic.flip_caption(before) == after
    assert synthetic.flip_caption(after) == before


def test_flipped_caption_describes_flipped_scene(small):
    for scene, caps in zip(_scenes(small["test"]), small["test"]["captions"]):
        flipped = synthetic.flip_scene(scene)
        for cap in caps:
            assert synthetic.parse_caption(synthetic.flip_caption(cap)) == _canonical(flipped)
        if scene["relation"] == "left of":  # the flipped layout still reads subject-left-of-object
            assert max(b[2] for b in flipped["boxes"]["subject"]) < min(b[0] for b in flipped["boxes"]["object"])


def test_build_writes_atomically_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "syn"
    kw = dict(n_train=8, n_val=4, n_test=8, progress=False)
    synthetic.build(out, **kw)
    loaded = datasets.load_from_disk(str(out))
    assert {k: len(v) for k, v in loaded.items()} == {"train": 8, "val": 4, "test": 8, "test_unseen": 8,
                                                      "test_frames": 8, "test_words": 8}
    card = json.loads((out / "synthetic.json").read_text())
    assert card["n_train"] == 8 and card["splits"]["test_unseen"]["images"] == 8
    assert set(card["splits"]) == set(loaded) and len(card["held_out_combinations"]) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temporary folder left
    with pytest.raises(DataPrepError, match="not empty"):
        synthetic.build(out, **kw)
    synthetic.build(out, overwrite=True, **{**kw, "n_train": 4})
    assert len(datasets.load_from_disk(str(out))["train"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", boom)
    with pytest.raises(KeyboardInterrupt):
        synthetic.build(tmp_path / "syn", n_train=4, n_val=4, n_test=4, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_ensure_default_builds_only_when_missing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(synthetic, "build", lambda out, **kw: calls.append(out) or Path(out))
    assert synthetic.ensure_default(tmp_path / "missing") == tmp_path / "missing"
    assert calls == [tmp_path / "missing"]
    (tmp_path / "ready").mkdir()
    (tmp_path / "ready" / "dataset_dict.json").write_text("{}")
    assert synthetic.ensure_default(tmp_path / "ready") == tmp_path / "ready"
    assert len(calls) == 1


def test_build_renders_in_one_process_per_core_unless_told(tmp_path, monkeypatch):
    """build (the CLI, ensure_default and the offline profile call it) asks generate for a process per core
    (workers=None), generate itself for one; a caller's workers wins."""
    assert inspect.signature(synthetic.generate).parameters["workers"].default == 1
    asked = []

    def generate(**kw):
        asked.append(kw["workers"])
        raise KeyboardInterrupt  # stop before anything is rendered or written

    monkeypatch.setattr(synthetic, "generate", generate)
    for kw, want in (({}, None), ({"workers": 1}, 1), ({"workers": 3}, 3)):
        with pytest.raises(KeyboardInterrupt):
            synthetic.build(tmp_path / "out", **kw)
        assert asked[-1] == want
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("threads", [1, 3])  # one thread: the pool forks; several (a Jupyter kernel): it spawns
def test_rendering_in_several_processes_gives_the_same_dataset(monkeypatch, threads):
    kw = dict(n_train=40, n_val=8, n_test=8, seed=4, progress=False)
    one = synthetic.generate(**kw, workers=1)
    monkeypatch.setattr(synthetic.threading, "active_count", lambda: threads)
    two = synthetic.generate(**kw, workers=2)
    for name in one:
        assert one[name].to_dict() == two[name].to_dict(), name  # every image's bytes, caption, scene, id
    assert synthetic._workers(synthetic.PARALLEL_FROM - 1) == 1 and synthetic._workers(synthetic.PARALLEL_FROM) >= 1


def test_not_default_names_what_differs_from_the_default_dataset(tmp_path):
    def card(**params):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "synthetic.json").write_text(json.dumps({"generator": "data_prep.synthetic", **params}))
        return folder

    default = {**synthetic.DEFAULTS, "n_unseen": synthetic.DEFAULTS["n_test"]}
    assert synthetic.not_default(card(**default)) is None
    old = {k: v for k, v in default.items() if k != "more_frames"}  # a card from before the option
    message = synthetic.not_default(card(**old))
    assert "more_frames 0.0 (default 0.3)" in message and "--overwrite" in message
    assert "n_train 2000 (default 10000)" in synthetic.not_default(card(**{**default, "n_train": 2000}))
    assert synthetic.not_default(tmp_path / "nothing here") is None  # data prepared otherwise: no card
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "synthetic.json").write_text("{not json")
    assert synthetic.not_default(tmp_path / "broken") is None


def test_the_default_dataset_writes_the_more_frames_and_its_card_says_so(tmp_path):
    from data_prep.captions import in_more_frame

    assert synthetic.DEFAULTS["more_frames"] == synthetic.MORE_FRAMES == 0.3
    out = synthetic.build(tmp_path / "d", n_train=40, n_val=4, n_test=4, progress=False)
    assert json.loads((out / "synthetic.json").read_text())["more_frames"] == 0.3
    captions = [c for caps in datasets.load_from_disk(str(out))["train"]["captions"] for c in caps]
    assert 0.15 < sum(map(in_more_frame, captions)) / len(captions) < 0.45


def test_cli(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "data_prep.synthetic", "--out", str(out), "--n-train", "8", "--n-val", "4",
           "--n-test", "4", "--n-unseen", "8", "--seed", "3"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 24 images" in done.stdout and "test_unseen 8" in done.stdout and str(out) in done.stdout
    assert {k: len(v) for k, v in datasets.load_from_disk(str(out)).items() if k in ("test", "test_unseen")} == {
        "test": 4, "test_unseen": 8}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
