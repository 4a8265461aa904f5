"""The committed notebooks carry outputs; they must come from the current code (see notebooks/stamp.py)."""
import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("nb_stamp", ROOT / "notebooks" / "stamp.py")
stamp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stamp)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_outputs_are_current(path):
    why = stamp.stale(path)
    assert why is None, f"{path.name}: committed outputs are stale ({why}); run `make notebooks` and commit"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_outputs_are_small_and_clean(path):
    notebook = json.loads(path.read_text())
    assert path.stat().st_size < 3_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; lower the figures' dpi"
    errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} was committed with an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_cell_time_limit_is_in_the_metadata(path):
    # nbmake's default of 300 s per cell is shorter than a training cell on two cores (CI failed on it)
    notebook = json.loads(path.read_text())
    assert notebook["metadata"].get("execution", {}).get("timeout") == stamp.CELL_TIMEOUT, \
        f"{path.name} lacks metadata.execution.timeout = {stamp.CELL_TIMEOUT}; run `make notebooks`"


def test_stamp_notices_a_changed_cell():
    notebook = json.loads(NOTEBOOKS[0].read_text())
    changed = copy.deepcopy(notebook)
    code = next(c for c in changed["cells"] if c["cell_type"] == "code")
    code["source"] = "".join(code["source"]) + "\nx = 1"
    assert stamp.source_hash(changed) != stamp.source_hash(notebook)
    assert stamp.source_hash(copy.deepcopy(notebook)) == stamp.source_hash(notebook)


def test_stamp_notices_a_changed_library_file(tmp_path, monkeypatch):
    for package in stamp.SOURCES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "a.py").write_text("x = 1\n")
    notebook = {"cells": [{"cell_type": "code", "source": "print(1)"}]}
    monkeypatch.setattr(stamp, "ROOT", tmp_path)
    before = stamp.source_hash(notebook)
    (tmp_path / "hat_min" / "a.py").write_text("x = 2\n")
    assert stamp.source_hash(notebook) != before
