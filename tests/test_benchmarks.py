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
                            "--base-frames-until", "0.05"])
    run = result["runs"][0]
    assert [v["step"] for v in run["curve"]] == [1, 2]
    config = json.loads(next((tmp_path / "runs").glob("*/last/train_config.json")).read_text())
    assert config["lr"] == 1e-3 and config["max_steps"] == 2 and config["base_frames_until_accuracy"] == 0.05
    for name in ("test_frames", "test_words"):
        frames = run["splits"][name]["frames"]
        assert list(frames) == list(FRAMES) and sum(f["captions"] for f in frames.values()) == 8 * 5
        assert all(0 <= f[k] <= 100 for f in frames.values() for k in f if k != "captions")
    out = capsys.readouterr().out
    assert "| `{fwd} {S} one finds {F}` | none |" in out and "### test_words" in out
