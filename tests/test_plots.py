"""The notebooks' figures: built from real data, with the content they claim (not pixels)."""
from collections import Counter

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402

from data_prep.synthetic import generate  # noqa: E402
from hat_min import plots  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return generate(n_train=4, n_val=4, n_test=8, seed=5, progress=False)["test"]


def test_dataset_pages(split):
    fig = plots.image_captions(split, rows=[0, 1])
    assert sum(bool(ax.images) for ax in fig.axes) == 2
    fig = plots.family_strip(split, rows=[0, 1, 2, 3])
    assert sum(bool(ax.images) for ax in fig.axes) == 4
    fig = plots.top_words(Counter("a red circle a blue square a".split()), top=3, title="words")
    assert len(fig.axes[0].patches) == 3
    fig = plots.length_histograms({"words": [3, 4, 5], "tokens": [5, 6, 7]}, title="lengths")
    assert fig.axes


def test_heatmaps_mark_cells_and_drop_labels_on_large_matrices():
    small, large = torch.eye(4), torch.rand(50, 60)
    fig = plots.heatmaps([small, large], ["small", "large"], marks=[[(0, 1, "red")], []],
                         xticklabels=[str(i) for i in range(4)])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["small", "large"]
    assert sum(isinstance(p, matplotlib.patches.Rectangle) and p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)
               for p in fig.axes[0].patches) == 1
    assert fig.axes[1].get_xticklabels() == [] or len(fig.axes[1].get_xticklabels()) < 60


def test_lambda_sweep_plots_both_curves():
    fig = plots.lambda_sweep([1, 3, 9], [2.0, 1.5, 0.5], [0.1, 0.2, 0.3], max_entropy=2.3)
    assert list(fig.axes[0].lines[0].get_ydata()) == [2.0, 1.5, 0.5]
    assert list(fig.axes[1].lines[0].get_ydata()) == [0.1, 0.2, 0.3]
