"""The set-up files agree: environment.yml names every pyproject dependency; the lock pins them."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]


def test_environment_yml_names_every_pyproject_dependency():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            names.add(_name(item))
    missing = {_name(r) for r in _pyproject_requirements()} - names
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    assert env["name"] == "hat_min"


def test_lock_pins_every_dependency_exactly():
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"unpinned line in the lock: {line}"
            pins[_name(line)] = line
    missing = {_name(r) for r in _pyproject_requirements()} - set(pins)
    assert not missing, f"requirements-lock.txt lacks {sorted(missing)}"
    assert pins["torch"].startswith("torch==")


def test_torch_is_unpinned_in_pyproject():
    torch_req = next(r for r in _pyproject_requirements() if _name(r) == "torch")
    assert "==" not in torch_req  # Colab keeps its own torch
