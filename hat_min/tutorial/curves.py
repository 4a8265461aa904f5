"""Training curves of a run: loss, in-batch accuracy and validation rSum, drawn once or live while it trains.

    fig = training_curves("runs/demo/metrics.jsonl")          # the three panels of a finished run
    live = LivePlot("runs/cache", every=20, total_steps=300)  # the same, redrawn in place while training

Both read the run's ``metrics.jsonl`` (``hat_min.training.runlog``); ``hat_min.tutorial.viz`` exports them too.
"""
from __future__ import annotations

from pathlib import Path


def training_curves(metrics_path: str | Path, total_steps: int | None = None):
    """Loss and in-batch accuracy per step, and validation rSum, from a run's ``metrics.jsonl``."""
    import matplotlib.pyplot as plt

    from ..training.runlog import read_metrics

    steps, validations = read_metrics(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    _draw_curves(axes, steps, validations, total_steps)
    fig.tight_layout()
    return fig


def _draw_curves(axes, steps: list[dict], validations: list[dict], total_steps: int | None = None) -> None:
    """The three panels of ``training_curves`` on ``axes``; the x axes span ``total_steps`` when given."""
    x = [r["step"] for r in steps]
    colours = {}
    for objective, part in _segments(steps):  # each objective its own line: their losses are not on one scale
        colour = colours.setdefault(objective, f"C{len(colours)}")
        axes[0].plot([r["step"] for r in part], _smooth([r["loss"] for r in part]), color=colour, label=objective)
    if colours:
        handles = {line.get_label(): line for line in axes[0].get_lines()}  # one legend entry per objective
        axes[0].legend(handles.values(), handles.keys(), fontsize=8, title="objective", title_fontsize=8)
    axes[0].set(title="training loss (smoothed per objective)", xlabel="step", ylabel="loss (summed over the batch)")
    axes[1].plot(x, _smooth([r["accuracy"] for r in steps]))
    axes[1].set(title="in-batch accuracy (smoothed)", xlabel="step", ylabel="share ranked first")
    for prev, rec in zip(steps, steps[1:]):  # the curriculum's switch of objective
        if rec.get("objective") != prev.get("objective"):
            for ax in axes[:2]:
                ax.axvline(rec["step"], color="grey", linestyle="--", linewidth=1)
            axes[0].annotate(f"{prev.get('objective')} -> {rec.get('objective')}", (rec["step"], 0.9),
                             xycoords=("data", "axes fraction"), xytext=(4, 0), textcoords="offset points", fontsize=8)
    axes[2].plot([v["step"] for v in validations], [v["rsum"] for v in validations], marker="o")
    axes[2].set(title="validation rSum", xlabel="step", ylabel="rSum (max 600)")
    if not validations:
        axes[2].text(0.5, 0.5, "no validation yet: it runs at the end\nof every epoch and of the run",
                     ha="center", va="center", transform=axes[2].transAxes, fontsize=9, color="grey")
    if total_steps:
        for ax in axes:
            ax.set_xlim(0, 1.03 * total_steps)  # room for the last validation's marker


class LivePlot:
    """Training curves redrawn in place while a run trains: pass it as ``on_step`` to ``train``.

    ``source`` is a run's ``metrics.jsonl`` or a folder of runs (a cache), in which case the newest
    ``*/metrics.jsonl`` is the run being trained. Every ``every`` steps the figure is redrawn into one
    notebook display (``IPython.display`` handle), so the outputs hold one figure however long the run.
    No widgets: it works headless (nbmake, nbconvert). ``show=False`` only draws (tests, scripts).

        live = LivePlot("runs/cache", every=20, total_steps=300)
        model, summary = train_or_load(model_cfg, train_cfg, data, "runs/cache", on_step=live)
        live.finish(Path(summary["out_dir"]) / "metrics.jsonl")   # final curves, also when nothing trained
    """

    def __init__(self, source: str | Path, every: int = 20, total_steps: int | None = None, show: bool = True):
        if every < 1:
            raise ValueError(f"every must be >= 1 step, got {every}")
        self.source, self.every, self.total_steps, self.show = Path(source), every, total_steps, show
        self.path: Path | None = None  # the metrics file, found at the first redraw
        self.steps_seen = 0  # optimiser steps reported to this plot (0: nothing trained)
        self.redraws = 0
        self._handle = None

    def __call__(self, state, model=None) -> None:
        """The ``on_step(state, model)`` hook of ``train``: redraw every ``every`` steps."""
        self.steps_seen += 1
        if state.step % self.every == 0:
            self.draw()

    def metrics_path(self) -> Path:
        """The metrics file followed: ``source`` itself, or the newest ``*/metrics.jsonl`` under it."""
        if self.path is None:
            if self.source.suffix == ".jsonl":
                self.path = self.source
            else:
                runs = sorted(self.source.glob("*/metrics.jsonl"), key=lambda p: p.stat().st_mtime)
                if not runs:
                    raise FileNotFoundError(f"no */metrics.jsonl under {self.source}: is it the run's cache folder?")
                self.path = runs[-1]
        return self.path

    def draw(self, path: str | Path | None = None):
        """Redraw the curves of ``path`` (default: the followed run) into the display; returns the figure."""
        import matplotlib.pyplot as plt

        from ..training.runlog import read_metrics

        steps, validations = read_metrics(Path(path) if path is not None else self.metrics_path())
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
        _draw_curves(axes, steps, validations, self.total_steps)
        last = steps[-1]["step"] if steps else 0
        fig.suptitle(f"training: step {last}" + (f" of {self.total_steps}" if self.total_steps else ""), fontsize=10)
        fig.tight_layout()
        plt.close(fig)  # shown through the handle only, not again by the inline backend
        if self.show:
            self._display(fig)
        self.redraws += 1
        return fig

    def finish(self, path: str | Path):
        """The final curves of a finished run (the cached one when nothing trained) in the same display."""
        return self.draw(path)

    def _display(self, fig) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def _segments(steps: list[dict]) -> list[tuple[str, list[dict]]]:
    """Consecutive records with the same ``objective`` (the curriculum's phases), in order."""
    parts: list[tuple[str, list[dict]]] = []
    for record in steps:
        objective = str(record.get("objective", "loss"))
        if not parts or parts[-1][0] != objective:
            parts.append((objective, []))
        parts[-1][1].append(record)
    return parts


def _smooth(values: list[float], weight: float = 0.9) -> list[float]:
    out, running = [], None
    for v in values:
        running = v if running is None else weight * running + (1 - weight) * v
        out.append(running)
    return out
