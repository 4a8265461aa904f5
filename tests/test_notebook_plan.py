"""Notebook 04's configuration cell under a faked GPU-and-hub profile: what it plans to train fits one Colab
runtime unless the full grid is asked for by name; on a CPU it plans no training at all."""
import json
from pathlib import Path

import pytest
import torch

from hat_min.tutorial import budget
from hat_min.training import TrainConfig

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_hierarchical_alignment_ablations.ipynb"


def _config_cell() -> str:
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    return next(c for c in cells if "GRID = os.environ.get(\"HAT_MIN_GRID\")" in c)


def _run(monkeypatch, gpu_and_hub: bool, grid: str | None = None, tmp_path: Path | None = None) -> dict:
    """Execute the cell from notebooks/ as Jupyter would; the GPU and the hub faked; nothing downloaded or trained."""
    monkeypatch.chdir(NOTEBOOK.parent)
    monkeypatch.delenv("HAT_MIN_PROFILE", raising=False)
    monkeypatch.delenv("HAT_MIN_OFFLINE", raising=False)
    monkeypatch.setenv("HAT_MIN_CACHE", str(tmp_path))  # an empty cache: notebook 03's model counts as not trained
    if grid:
        monkeypatch.setenv("HAT_MIN_GRID", grid)
    else:
        monkeypatch.delenv("HAT_MIN_GRID", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu_and_hub)
    import data_prep.hub

    monkeypatch.setattr(data_prep.hub, "offline_reason", lambda *a, **k: None if gpu_and_hub else "offline")
    namespace: dict = {}
    exec(compile(_config_cell(), "notebook-04-config", "exec"), namespace)
    return namespace


def test_unasked_the_paper_profile_plans_one_colab_runtime(monkeypatch, tmp_path):
    ns = _run(monkeypatch, gpu_and_hub=True, tmp_path=tmp_path)
    assert ns["PROFILE"] == "paper" and ns["GRID"] == "levels"
    plan = ns["PLAN"]
    # the levels question (4 configs) once each, plus notebook 03's model, at the colab recipe's T4 estimate
    per_run = budget.run_hours(TrainConfig.preset("colab"), budget.F30K_PAIRS, "T4")[1]
    assert plan["runs"] == len(ns["TRAIN_GRID"]["levels"]) + 1
    assert plan["hours"][1] == pytest.approx(plan["runs"] * per_run)
    assert plan["fits"] and plan["hours"][1] <= budget.COLAB_RUNTIME_H


def test_the_full_grid_only_by_name_and_then_it_says_it_does_not_fit(monkeypatch, tmp_path, capsys):
    ns = _run(monkeypatch, gpu_and_hub=True, grid="full", tmp_path=tmp_path)
    assert ns["GRID"] == "full" and not ns["PLAN"]["fits"]
    assert "does not fit one Colab runtime" in capsys.readouterr().out


def test_on_a_cpu_nothing_is_trained_unasked(monkeypatch, tmp_path):
    ns = _run(monkeypatch, gpu_and_hub=False, tmp_path=tmp_path)
    assert ns["PROFILE"] == "offline" and ns["GRID"] == "knockout" and ns["TRAIN_GRID"] == {}


def test_an_unknown_grid_name_stops_in_one_sentence(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="GRID must be 'knockout', 'levels' or 'full'"):
        _run(monkeypatch, gpu_and_hub=False, grid="everything", tmp_path=tmp_path)


def test_run_hours_is_phase_steps_times_measured_step_times():
    recipe = TrainConfig.preset("colab")
    steps = budget.phase_steps(recipe, budget.F30K_PAIRS)
    assert steps == {"frozen": 2500, "trained": 1250}  # one frozen epoch of 58-pair steps, then 1,250 more
    low, high = budget.run_hours(recipe, budget.F30K_PAIRS, "H100")
    assert low == pytest.approx((2500 * 0.061 + 1250 * 0.123) / 3600)
    assert high == pytest.approx((2500 * 0.069 + 1250 * 0.178) / 3600)
    with pytest.raises(ValueError, match="no step time for GPU"):
        budget.run_hours(recipe, budget.F30K_PAIRS, "V100")
