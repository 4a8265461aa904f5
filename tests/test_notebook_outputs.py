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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_outputs_read_well_without_a_kernel(path):
    # GitHub, nbviewer and untrusted JupyterLab show widgets as "VBox(children=...)" and bars as "0%| | 0/10000"
    notebook = json.loads(path.read_text())
    assert not stamp.residue(notebook), f"{path.name}: {stamp.residue(notebook)}; run `make notebooks`"
    # Jupyter's own kernelspec: opening the notebook does not mark it modified
    assert notebook["metadata"].get("kernelspec") == stamp.KERNELSPEC


def _stream(name, text):
    return {"output_type": "stream", "name": name, "text": text}


def test_clean_outputs_drops_bars_keeps_the_rest():
    bar_widget = {"output_type": "display_data", "metadata": {},
                  "data": {"text/plain": "decoding images:   0%|          | 0/10000 [00:00<?, ?img/s]",
                           stamp.WIDGET: {"model_id": "x", "version_major": 2, "version_minor": 0}}}
    explorer = {"output_type": "display_data", "metadata": {},
                "data": {"text/plain": "VBox(children=(HBox(children=(Text(value=''",
                         stamp.WIDGET: {"model_id": "y", "version_major": 2, "version_minor": 0}}}
    text_bar = _stream("stderr", "scoring:  50%|#####     | 5/10 [00:01<00:01, 4.2block/s]\r"
                                 "scoring: 100%|##########| 10/10 [00:02<00:00, 4.5block/s]\n")
    warning = _stream("stderr", "UserWarning: something worth reading\n")
    mixed = _stream("stderr", "epoch 1:  10%|#         | 1/10 [00:01<00:09, 1.0it/s]\rstep 100: val R@1 9.0\n")
    figure = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "AAAA", "text/plain": "<Figure>"}}
    notebook = {"metadata": {"widgets": {"state": {}}},
                "cells": [{"cell_type": "code", "outputs": [bar_widget, text_bar, figure]},
                          {"cell_type": "code", "outputs": [explorer, warning, mixed]},
                          {"cell_type": "markdown", "source": "prose"}]}
    assert len(stamp.residue(notebook)) == 5
    stamp.clean_outputs(notebook)
    assert stamp.residue(notebook) == []
    assert notebook["cells"][0]["outputs"] == [figure]
    explorer_note, kept_warning, kept_line = notebook["cells"][1]["outputs"]
    assert "run the notebook" in explorer_note["text"]
    assert kept_warning == warning
    assert kept_line["text"] == "step 100: val R@1 9.0\n"
    assert "widgets" not in notebook["metadata"]


def test_a_cleaned_notebook_can_be_written():
    nbformat = pytest.importorskip("nbformat")
    explorer = nbformat.v4.new_output("display_data", data={"text/plain": "VBox(children=(HBox(", stamp.WIDGET: {}})
    cell = nbformat.v4.new_code_cell("ui", outputs=[explorer, nbformat.v4.new_output("stream", name="stderr",
                                                                                     text="a  10%|#  | 1/10 [00:01<00:09]\nkept\n")])
    notebook = nbformat.v4.new_notebook(cells=[cell])
    stamp.clean_outputs(notebook)
    text = nbformat.writes(nbformat.from_dict(notebook))  # what stamp.execute writes
    assert "run the notebook" in text and "kept" in text and "10%|" not in text
