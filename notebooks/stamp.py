"""Execute the tutorial notebooks in place and stamp them, so that a stale committed output cannot go unnoticed.

The notebooks are committed with their outputs (figures show when browsing the repository).
An output is stale when the code that made it changed afterwards: a code cell of the notebook,
or any source file of ``hat_min/`` or ``data_prep/``. ``make notebooks`` runs this script: it
executes each notebook offline (``HAT_MIN_OFFLINE=1``), then writes the hash of that code into
the notebook's metadata (``metadata.hat_min.source_hash``). ``tests/test_notebook_outputs.py``
recomputes the hash and fails, naming the notebook and the command, when they differ.

Committed outputs are read on GitHub and in untrusted JupyterLab, where widgets do not render:
progress bars (tqdm's widgets and its text bars) are dropped from the outputs, and any other
widget (notebook 05's explorer) is replaced by a line saying to run the notebook. The kernelspec
is written as Jupyter's own ("Python 3 (ipykernel)"), so that opening a notebook does not mark it
modified. The notebooks run with a fresh, empty run cache (``HAT_MIN_CACHE``), 03 before 02, so
that 03's committed output shows the training that 02, 04 and 05 then load, as from a fresh clone.

    python notebooks/stamp.py                    # execute and stamp every notebook
    python notebooks/stamp.py notebooks/03_training.ipynb
    python notebooks/stamp.py --check            # only compare the stamps (what the test does)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("hat_min", "data_prep")  # the packages whose code the notebooks run
KEY = "hat_min"  # notebook metadata key
# Per-cell time limit, stored in each notebook's metadata (``execution.timeout``), which nbmake and
# nbclient read: a training cell may take several minutes on two CPU cores, more than nbmake's
# default of 300 s. Notebook 04's ablation cell took 367 s on one 2-core machine and over 900 s on a
# slower one without AVX-512 (2026-12-02): the limit leaves room for such machines.
CELL_TIMEOUT = 1800
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
WIDGET = "application/vnd.jupyter.widget-view+json"
# a tqdm bar as text: "desc:  40%|####      | 4/10 [00:01<00:02, 3.1it/s]"
_BAR = re.compile(r"^.*\d+%\|.*\|.*$|^.*\|\s*\d+/\d+\s*\[.*\]\s*$")
# Notebooks that run first: 03 trains the run that 02 (the anatomy of a trained model) loads.
FIRST = ("01_", "03_")


def source_hash(notebook: dict) -> str:
    """sha256 over the notebook's code cells and every .py file of the packages it imports."""
    h = hashlib.sha256()
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            h.update(b"\0cell\0" + source.encode())
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            h.update(b"\0file\0" + path.relative_to(ROOT).as_posix().encode() + b"\0")
            h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()


def stale(path: Path) -> str | None:
    """Why the committed outputs of ``path`` cannot be trusted, or None when they are current."""
    notebook = json.loads(path.read_text())
    stamp = notebook.get("metadata", {}).get(KEY, {}).get("source_hash")
    if stamp is None:
        return "it was never executed by notebooks/stamp.py"
    if stamp != source_hash(notebook):
        return "its code cells or hat_min/data_prep changed after it was executed"
    missing = [i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code" and c["source"] and
               c.get("execution_count") is None]
    if missing:
        return f"code cells {missing} have no outputs"
    return None


def clean_outputs(notebook: dict) -> int:
    """Drop progress-bar residue from ``notebook``'s outputs in place; returns how many outputs changed.

    A tqdm widget (its text fallback reads "0%|  | 0/10000" or "HBox(children=...)") is removed; any
    other widget becomes one line of text; text bars are cut out of stderr streams.
    """
    changed = 0
    for cell in notebook["cells"]:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET in data:
                changed += 1
                text = "".join(data.get("text/plain", ""))
                if _BAR.match(text.strip().splitlines()[0] if text.strip() else "") or text.startswith("HBox(children=(HTML("):
                    continue  # a progress bar
                out = {"output_type": "stream", "name": "stdout",
                       "text": "[an interactive widget: run the notebook to use it]\n"}
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = "".join(out["text"])
                lines = [l for l in re.split(r"(?<=\n)|\r", text) if l.strip() and not _BAR.match(l.strip())]
                if "".join(lines) != text:
                    changed += 1
                    if not lines:
                        continue
                    out = {**out, "text": "".join(l if l.endswith("\n") else l + "\n" for l in lines)}
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    if "widgets" in notebook.get("metadata", {}):
        del notebook["metadata"]["widgets"]
        changed += 1
    return changed


def residue(notebook: dict) -> list[str]:
    """What static viewers would show as widget or progress-bar residue (empty when clean)."""
    found = []
    for i, cell in enumerate(notebook["cells"]):
        for out in cell.get("outputs", []):
            if WIDGET in out.get("data", {}):
                found.append(f"cell {i}: a widget output")
            elif out.get("output_type") == "stream":
                text = "".join(out["text"])
                if any(_BAR.match(l.strip()) for l in re.split(r"\n|\r", text)):
                    found.append(f"cell {i}: a progress bar in its {out['name']}")
    if "widgets" in notebook.get("metadata", {}):
        found.append("widget state in the notebook's metadata")
    return found


def execute(path: Path) -> float:
    """Run ``path`` top to bottom in its folder (offline profile), store outputs and the stamp; returns seconds."""
    import nbclient
    import nbformat

    os.environ["HAT_MIN_OFFLINE"] = "1"
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.setdefault("execution", {})["timeout"] = CELL_TIMEOUT
    started = time.monotonic()
    nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    clean_outputs(notebook)
    notebook = nbformat.from_dict(notebook)  # the outputs clean_outputs rebuilt are plain dicts
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata[KEY] = {"source_hash": source_hash(notebook)}
    tmp = path.with_suffix(".ipynb.tmp")
    nbformat.write(notebook, tmp)
    tmp.replace(path)  # atomic: an interrupted run leaves the old notebook whole
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: every notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report notebooks whose outputs are stale")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.check:
        problems = [(p, why) for p in paths if (why := stale(p))]
        for p, why in problems:
            print(f"{p.name}: stale outputs ({why}); run `make notebooks`")
        return 1 if problems else 0
    paths = sorted(paths, key=lambda p: (not p.name.startswith(FIRST), p.name))
    cache = Path(tempfile.mkdtemp(prefix="stamp-cache-", dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None))
    os.environ["HAT_MIN_CACHE"] = str(cache)  # nothing trained before: every run happens in the outputs
    try:
        for p in paths:
            print(f"executing {p.name} ...", flush=True)
            print(f"  done in {execute(p):.0f} s", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
