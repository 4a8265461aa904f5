"""The notebooks' first cells: the Colab set-up (one repository variable, a clear stop on the placeholder) and
the shared profile (hat_min.tutorial.profiles), so that notebooks 02, 03 and 05 train and load the same run."""
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _run_colab_cell(source: str, tmp_path, monkeypatch, repo: str | None) -> list[list[str]]:
    """Execute the set-up cell as Colab would (google.colab imported, no repository around); returns the commands."""
    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.chdir(tmp_path)
    if repo is None:
        monkeypatch.delenv("HAT_MIN_REPO", raising=False)
    else:
        monkeypatch.setenv("HAT_MIN_REPO", repo)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or (Path("hat_min/notebooks").mkdir(
        parents=True, exist_ok=True) if cmd[0] == "git" else None))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(source, "colab-cell", "exec"), {})
    return calls


def test_every_notebook_has_the_same_set_up_cell():
    assert len({_code_cells(p)[0] for p in NOTEBOOKS}) == 1
    assert all('HAT_MIN_REPO = os.environ.get("HAT_MIN_REPO"' in _code_cells(p)[0] for p in NOTEBOOKS)


def test_the_placeholder_stops_with_what_to_set(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="Set HAT_MIN_REPO in the first code cell"):
        _run_colab_cell(_code_cells(NOTEBOOKS[0])[0], tmp_path, monkeypatch, repo=None)
    assert not (tmp_path / "hat_min").exists()


def test_the_repository_variable_is_what_gets_cloned(tmp_path, monkeypatch):
    calls = _run_colab_cell(_code_cells(NOTEBOOKS[0])[0], tmp_path, monkeypatch, repo="https://github.com/someone/hat_min")
    assert calls[0] == ["git", "clone", "--depth", "1", "https://github.com/someone/hat_min", "hat_min"]
    assert calls[1][1:] == ["-m", "pip", "install", "-q", "-e", "hat_min"]
    assert Path.cwd() == tmp_path / "hat_min" / "notebooks"


def test_outside_colab_the_cell_does_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a command outside Colab"))
    exec(compile(_code_cells(NOTEBOOKS[0])[0], "colab-cell", "exec"), {})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_takes_its_profile_from_hat_min_profiles(path):
    config = _code_cells(path)[1]
    assert "P = profiles.choose()" in config and "hub_reachable" not in config
