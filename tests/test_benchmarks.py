"""benchmarks/: the GPU script's CPU smoke mode runs end to end (the GPU run itself is measured, not tested)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_mode_runs_on_a_cpu(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--smoke", "--device", "cpu",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["smoke"] and result["train_full"]["step_s"] > 0 and result["train_frozen"]["frozen_backbones"]
    assert {run["direction"] for run in result["scoring"]} == {"i2t", "t2i"}
    assert all(run["finite"] for run in result["scoring"])
    assert "| training step, all weights" in out.stdout  # the Markdown table
    # the colab recipe's two phases, with its micro-batches (grad_accum 2)
    assert result["colab_frozen"]["frozen_backbones"] and not result["colab_trained"]["frozen_backbones"]
    assert result["colab_frozen"]["grad_accum"] == result["colab_trained"]["grad_accum"] == 2
    assert "| colab recipe, all weights" in out.stdout


def test_train_step_benchmark_smoke_mode(tmp_path, capsys):
    """benchmarks/train_step.py times both attention variants on a small generated dataset and restores hat_min's
    choice afterwards."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import train_step
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from data_prep import synthetic
    from hat_min import encoders

    data = synthetic.build(tmp_path / "data", n_train=128, n_val=8, n_test=8, progress=False)
    result = train_step.main(["--smoke", "--data", str(data), "--json", str(tmp_path / "step.json")])
    assert set(result["mean_s"]) == {"eager", "sdpa"} and result["steps_timed"] == 1
    assert all(m["step"] > 0 and set(train_step.PARTS) <= set(m) for m in result["mean_s"].values())
    assert json.loads((tmp_path / "step.json").read_text())["sdpa_over_eager"] == result["sdpa_over_eager"]
    assert "| eager |" in capsys.readouterr().out
    assert encoders.CPU_ATTENTION == "eager"


def test_phrasing_benchmark_smoke_mode(tmp_path, capsys):
    """benchmarks/phrasing.py trains (2 steps), prints its learning curve and, frame by frame, each phrasing split."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import phrasing
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from data_prep import synthetic
    from data_prep.phrasing import FRAMES

    data = synthetic.build(tmp_path / "data", n_train=64, n_val=8, n_test=8, progress=False, more_frames=0.3)
    result = phrasing.main(["--smoke", "--data", str(data), "--cache", str(tmp_path / "runs"), "--lr", "1e-3",
                            "--base-frames-until", "0.05", "--switch-accuracy", "0.5"])
    run = result["runs"][0]
    assert [v["step"] for v in run["curve"]] == [1, 2]
    config = json.loads(next((tmp_path / "runs").glob("*/last/train_config.json")).read_text())
    assert config["lr"] == 1e-3 and config["max_steps"] == 2 and config["base_frames_until_accuracy"] == 0.05
    assert config["switch_accuracy"] == 0.5
    for name in ("test_frames", "test_words"):
        frames = run["splits"][name]["frames"]
        assert list(frames) == list(FRAMES) and sum(f["captions"] for f in frames.values()) == 8 * 5
        assert all(0 <= f[k] <= 100 for f in frames.values() for k in f if k != "captions")
    out = capsys.readouterr().out
    assert "| `{fwd} {S} one finds {F}` | none |" in out and "### test_words" in out


def test_words_benchmark_reads_one_kind_at_a_time(tmp_path, capsys):
    """benchmarks/words.py: its "all" captions are test_words's own, every new word is probed, the tables print."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import words
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from data_prep import phrasing, synthetic
    from hat_min import HAT, HATConfig
    from hat_min.evaluation.data import load_splits

    data = synthetic.build(tmp_path / "data", n_train=16, n_val=8, n_test=8, progress=False)
    splits = load_splits(data)
    assert words.kind_captions(splits["test"], phrasing.WORD_KINDS, 0) == splits["test_words"]["captions"]
    assert words.kind_captions(splits["test"], (), 0) != splits["test_frames"]["captions"]  # another stream
    HAT(HATConfig.preset("tiny")).save_pretrained(tmp_path / "ckpt")
    result = words.main(["--checkpoint", str(tmp_path / "ckpt"), "--data", str(data), "--images", "8",
                         "--contexts", "2", "--json", str(tmp_path / "words.json")])
    assert list(result["by_kind"]) == ["none (new frames only)", *phrasing.WORD_KINDS, "all (= test_words)"]
    assert all(0 <= v <= 100 for m in result["by_kind"].values() for v in m.values())
    new = {kind: sum(len(n) for _, n in words.MEANINGS[kind].values()) for kind in phrasing.WORD_KINDS}
    assert new["colour"] == 16 and new["relation"] == 8
    for reading in result["reading"].values():
        for kind, levels in reading.items():
            assert len(levels) == len(result["levels"])
            assert all(level["total"] == new[kind] and 0 <= level["read"] <= level["total"] for level in levels)
    assert json.loads((tmp_path / "words.json").read_text())["images"] == 8
    out = capsys.readouterr().out
    assert "| colour |" in out and "| MiniLM as shipped, level 1" in out


def test_words_probe_puts_each_word_in_its_slot():
    """Every probe caption holds its word at the span it names, and only the slot differs between a context's texts."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import words
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for kind in words.KINDS:
        for texts in words.probe_captions(kind, 3):
            rests = set()
            for (meaning, text), (caption, start, end) in texts.items():
                slot = caption[start:end]
                assert slot == text or (kind == "shape" and slot == words._plural(text)), (caption, text)
                if kind != "count":  # a count's noun agrees with it
                    rests.add(caption[:start] + "_" + caption[end:])
            assert len(rests) <= 1, rests
