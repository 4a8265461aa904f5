"""A run's metrics log: one JSON record per line in ``metrics.jsonl`` (steps and validations).

    log = MetricsLog(out / "metrics.jsonl", keep_until=0)      # a new run
    log.write({"step": 1, "loss": 2.3})
    steps, validations = read_metrics(out / "metrics.jsonl")   # for plots (hat_min.tutorial.curves)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends one JSON record per line; a resumed run first drops the records after its checkpoint.

    The log is read (and checked) when opened, and written from the first ``start`` or ``write`` on,
    rewritten only when that changes it: a finished run opened again (``train_or_load`` of a cached
    run) leaves its log untouched, bytes and modification time alike. A last line cut short (a run
    killed mid-write) is dropped; any other line that is not JSON is a ValueError naming the file and
    the line.
    """

    def __init__(self, path: Path, keep_until: int, enabled: bool = True):
        self.path, self.enabled, self._kept = Path(path), enabled, None
        if not enabled:
            return
        old = self.path.read_text() if self.path.exists() else None
        lines = old.splitlines() if old and keep_until else []
        kept = "".join(l + "\n" for n, l in enumerate(lines, 1)
                       if (step := _line_step(self.path, n, l, last=n == len(lines))) is not None and step <= keep_until)
        self._kept = kept if kept != old else None

    def start(self) -> None:
        """Drop the records after ``keep_until`` from the file (a new run: all of them), once, before any write."""
        if self.enabled and self._kept is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(self._kept)
        self._kept = None

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self.start()
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


_NESTED = ("validation", "generalisation")  # records that hold their step inside: {"validation": {"step": ...}}


def _record_step(record: dict[str, Any]) -> int:
    if "step" in record:
        return record["step"]
    nested = next((record[key] for key in _NESTED if key in record), None)
    if nested is None:
        raise KeyError("step")
    return nested["step"]


def _line_step(path: Path, number: int, line: str, last: bool) -> int | None:
    """The step of line ``number`` of the log; None for a blank line or a torn last line."""
    try:
        return _record_step(json.loads(line)) if line.strip() else None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        if last and isinstance(err, json.JSONDecodeError):
            return None  # cut short by a kill in the middle of a write: dropped with the records after the checkpoint
        raise ValueError(f"{path} line {number} is not a metrics record ({err}): the log is corrupt") from None


def _records(path: str | Path) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict]]:
    """A run's ``metrics.jsonl`` as (training records, validation records), for plots."""
    records = _records(path)
    return ([r for r in records if not any(key in r for key in _NESTED)],
            [r["validation"] for r in records if "validation" in r])


def read_generalisation(path: str | Path) -> list[dict]:
    """The generalisation records of a run's ``metrics.jsonl`` (split, step and metrics; for the log only)."""
    return [r["generalisation"] for r in _records(path) if "generalisation" in r]
