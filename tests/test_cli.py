"""python -m hat_min: help texts, one-line errors, evaluate and demo end to end on a small dataset."""
import json
import subprocess
import sys

import pytest

from data_prep.synthetic import generate
from hat_min import HAT, HATConfig

ENV = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
KEYS = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"}
FAMILY = {f"{m}_{d}" for m in ("family", "in_family") for d in ("i2t", "t2i")}
WINOGROUND = {"winoground_text", "winoground_image", "winoground_group"}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "hat_min", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "synthetic"
    generate(n_train=16, n_val=4, n_test=6, seed=2, progress=False).save_to_disk(str(path))  # 80 pairs: one demo batch
    return path


@pytest.mark.parametrize("command, words", [
    ([], ["train", "evaluate", "demo"]),
    (["train"], ["--preset", "--data", "--resume", "--set", "--device"]),
    (["evaluate"], ["--checkpoint", "--protocol", "--ensemble", "coco1k", "--rerank-k"]),
    (["demo"], ["--data", "--max-steps", "--general-images"]),
])
def test_help_explains_every_option(command, words):
    out = run(*command, "--help")
    assert out.returncode == 0
    assert all(w in out.stdout for w in words)


def test_missing_data_is_one_line_naming_the_builder(tmp_path):
    out = run("train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "python -m data_prep.synthetic --out" in out.stderr


def test_paper_preset_offline_is_one_line(data, tmp_path):
    out = run("train", "--preset", "paper", "--data", str(data), "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "needs the internet" in out.stderr and "HATConfig.preset('tiny')" in out.stderr


def test_unknown_override_is_a_clear_error(data, tmp_path):
    out = run("train", "--data", str(data), "--out", str(tmp_path / "run"), "--set", "colour=red")
    assert out.returncode == 2 and "--set 'colour=red'" in out.stderr and "Traceback" not in out.stderr


def test_evaluate_prints_a_table_and_ends_with_json(data, tmp_path):
    HAT(HATConfig.preset("tiny")).save_pretrained(tmp_path / "model")
    out = run("evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(data))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "R@1" in out.stdout and "Within-family accuracy" in out.stdout
    assert "pooled (reference)" in out.stdout and "bag of words (reference)" in out.stdout
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS | FAMILY | WINOGROUND | {"xattn_pairs", "baselines"} <= set(last) and last["xattn_pairs"] == 6 * 30
    assert "family_i2t_colour" in last or "family_i2t_size" in last or "family_i2t_texture" in last
    assert set(last["baselines"]) == {"pooled", "bag of words", "chance"}
    assert last["baselines"]["bag of words"]["in_family_t2i"] == 100.0  # words alone find the family
    assert last["baselines"]["chance"]["family_i2t"] == pytest.approx(100 / 3, abs=0.1)  # families of 4 and 2
    assert last["baselines"]["chance"]["winoground_group"] == pytest.approx(100 / 6, abs=0.01)
    assert "Winoground scores" in out.stdout


@pytest.mark.parametrize("split", ["test_unseen", "test_frames", "test_words"])
def test_evaluate_reads_captions_outside_the_generators_grammar(data, tmp_path, split):
    HAT(HATConfig.preset("tiny")).save_pretrained(tmp_path / "model")
    out = run("evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(data), "--split", split)
    assert out.returncode == 0, out.stderr[-2000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS | FAMILY | WINOGROUND <= set(last)
    assert last["baselines"]["bag of words"]["in_family_t2i"] == 100.0  # read from the scenes, whatever the words


@pytest.mark.parametrize("split", ["test_unseen", "test_words"])
def test_evaluate_on_data_without_the_generalisation_splits_says_how_to_get_them(data, tmp_path, split):
    import datasets

    old = tmp_path / "old"
    splits = datasets.load_from_disk(str(data))
    datasets.DatasetDict({k: splits[k] for k in ("train", "val", "test")}).save_to_disk(str(old))
    out = run("evaluate", "--checkpoint", str(tmp_path), "--data", str(old), "--split", split)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"no {split!r} split" in out.stderr
    assert f"python -m data_prep.synthetic --out {old} --overwrite" in out.stderr


def test_evaluate_on_data_without_families_has_no_family_keys(data, tmp_path):
    import datasets

    plain = tmp_path / "plain"
    splits = datasets.load_from_disk(str(data))
    datasets.DatasetDict({k: v.remove_columns(["scene", "family"]) for k, v in splits.items()}).save_to_disk(str(plain))
    HAT(HATConfig.preset("tiny")).save_pretrained(tmp_path / "model")
    out = run("evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(plain))
    assert out.returncode == 0, out.stderr[-2000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert not any("family" in k for k in last) and "Within-family" not in out.stdout
    assert set(last["baselines"]) == {"pooled", "chance"}


def test_evaluate_with_rerank_k_scores_fewer_pairs(data, tmp_path):
    HAT(HATConfig.preset("tiny")).save_pretrained(tmp_path / "model")
    out = run("evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(data), "--rerank-k", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rerank top-2" in out.stdout and "pairs" in out.stdout
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS | FAMILY | {"xattn_pairs"} <= set(last) and 0 < last["xattn_pairs"] <= 6 * 2 + 30 * 2


@pytest.mark.parametrize("extra, message", [(["--rerank-k", "0"], "--rerank-k must be >= 1"),
                                            (["--rerank-k", "4", "--ensemble", "x"], "leave out --ensemble")])
def test_bad_rerank_options_are_one_line(data, tmp_path, extra, message):
    out = run("evaluate", "--checkpoint", str(tmp_path), "--data", str(data), *extra)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_demo_runs_end_to_end(data, tmp_path):
    # a dataset card of the generator from before its more frames (nothing else reads it): the demo says so, and runs
    (data / "synthetic.json").write_text(json.dumps({"generator": "data_prep.synthetic", "n_train": 16, "n_val": 4,
                                                     "n_test": 6, "n_unseen": 6, "image_size": 64, "seed": 2}))
    out = run("demo", "--data", str(data), "--out", str(tmp_path / "demo"), "--max-steps", "2", "--general-images", "4")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"the dataset at {data} is not the default one: n_train 16 (default 10000)" in out.stderr
    assert "more_frames 0.0 (default 0.3)" in out.stderr and "--overwrite" in out.stderr
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS | FAMILY | WINOGROUND <= set(last) and last["data"] == str(data)
    assert {"pooled", "bag of words", "chance"} == set(last["baselines"])
    assert set(last["splits"]) == {"test_unseen", "test_frames", "test_words"}
    assert "test_words, pooled (reference)" in out.stdout and "test_unseen, pooled (reference)" in out.stdout
    for name, result in last["splits"].items():
        assert KEYS | FAMILY | WINOGROUND <= set(result) and set(result["baselines"]) == {"pooled"}, name
        assert result["images"] == 4, name  # the first family of each split (--general-images 4)
    assert "(images scored: test_unseen 4, test_frames 4, test_words 4;" in out.stdout
    assert (tmp_path / "demo" / "retrievals.png").stat().st_size > 10_000
    assert HAT.from_pretrained(last["checkpoint"]).config.name == "minilm"
