"""python -m hat_min: help texts, one-line errors, evaluate and demo end to end on a small dataset."""
import json
import subprocess
import sys

import pytest

from data_prep.synthetic import generate
from hat_min import HAT, HATConfig

ENV = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
KEYS = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"}


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
    (["demo"], ["--data", "--max-steps"]),
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
    assert "R@1" in out.stdout
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(last) == KEYS | {"xattn_pairs"} and last["xattn_pairs"] == 6 * 30  # every pair


def test_evaluate_with_rerank_k_scores_fewer_pairs(data, tmp_path):
    HAT(HATConfig.preset("tiny")).save_pretrained(tmp_path / "model")
    out = run("evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(data), "--rerank-k", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rerank top-2" in out.stdout and "pairs" in out.stdout
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(last) == KEYS | {"xattn_pairs"} and 0 < last["xattn_pairs"] <= 6 * 2 + 30 * 2


@pytest.mark.parametrize("extra, message", [(["--rerank-k", "0"], "--rerank-k must be >= 1"),
                                            (["--rerank-k", "4", "--ensemble", "x"], "leave out --ensemble")])
def test_bad_rerank_options_are_one_line(data, tmp_path, extra, message):
    out = run("evaluate", "--checkpoint", str(tmp_path), "--data", str(data), *extra)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_demo_runs_end_to_end(data, tmp_path):
    out = run("demo", "--data", str(data), "--out", str(tmp_path / "demo"), "--max-steps", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= set(last) and last["data"] == str(data)
    assert (tmp_path / "demo" / "retrievals.png").stat().st_size > 10_000
    assert HAT.from_pretrained(last["checkpoint"]).config.name == "minilm"
