"""benchmarks/: the GPU script's CPU smoke mode runs end to end (the GPU run itself is measured, not tested)."""
import json
import subprocess
import sys
from pathlib import Path

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
