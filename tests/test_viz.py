"""Pictures are drawn from real data and real metrics (content checked, not pixels)."""
import json

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from data_prep.synthetic import generate  # noqa: E402
from hat_min.viz import retrieval_figure, save_retrieval_examples, training_curves  # noqa: E402


def test_retrieval_figure_marks_the_true_image(tmp_path):
    split = generate(n_train=4, n_val=4, n_test=6, seed=4, progress=False)["test"]
    sims = torch.eye(6).repeat_interleave(5, dim=1)  # perfect retrieval
    fig = retrieval_figure(split, sims, queries=[0, 7], k=3)
    frames = [ax for ax in fig.axes if ax.images]
    assert len(frames) == 6
    assert sum(ax.spines["top"].get_linewidth() == 3 for ax in frames) == 2  # one hit per row, ranked first
    path = save_retrieval_examples(split, sims, tmp_path / "r.png")
    assert path.stat().st_size > 5_000


def test_training_curves_read_the_metrics_log(tmp_path):
    log = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": 10 - s, "accuracy": s / 10, "lr": 1e-3} for s in range(1, 6)]
    records.append({"validation": {"step": 5, "rsum": 42.0}})
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = training_curves(log)
    assert [ax.get_title() for ax in fig.axes][2] == "validation rSum"
    assert list(fig.axes[2].lines[0].get_ydata()) == [42.0]
