"""hat_min.tutorial.viz: pictures drawn from real data and real metrics (content checked, not pixels); the ranking
helpers against brute force, PCA against an SVD, every figure drawn once headless."""
import json
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from data_prep.synthetic import generate  # noqa: E402
from hat_min.tutorial import scenes, viz  # noqa: E402
from hat_min.training.runlog import MetricsLog  # noqa: E402
from hat_min.tutorial.viz import retrieval_figure, save_retrieval_examples, training_curves  # noqa: E402


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


def test_the_loss_is_one_line_per_objective_smoothed_within_it(tmp_path):
    """InfoNCE and the hinge are not on one scale: a curriculum's loss is drawn as two lines, never one across."""
    log = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": 50.0, "accuracy": 0.1, "objective": "infonce"} for s in range(1, 4)]
    records += [{"step": s, "loss": 2.0, "accuracy": 0.5, "objective": "hardest"} for s in range(4, 7)]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    loss = training_curves(log).axes[0]
    lines = [line for line in loss.get_lines() if line.get_label() in ("infonce", "hardest")]
    assert [line.get_label() for line in lines] == ["infonce", "hardest"]
    assert list(lines[0].get_xdata()) == [1, 2, 3] and list(lines[1].get_xdata()) == [4, 5, 6]
    assert list(lines[1].get_ydata()) == [2.0, 2.0, 2.0]  # the smoothing restarts: no trace of the 50s before
    assert lines[0].get_color() != lines[1].get_color()
    assert sorted(t.get_text() for t in loss.get_legend().get_texts()) == ["hardest", "infonce"]


CPI = 5


@pytest.fixture(scope="module")
def split():
    return generate(n_train=4, n_val=4, n_test=8, progress=False)["test"]


@pytest.fixture(scope="module")
def scored(tiny_model, split):
    """(encoded features, sims (8, 40)) of the tiny untrained model on the small split."""
    from hat_min.evaluation.protocols import encode, similarity

    encoded = encode(tiny_model, split, device="cpu", progress=False, workers=0)
    return encoded, similarity(tiny_model, encoded, progress=False, device="cpu")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from hat_min.encoders import load_tokenizer

    return load_tokenizer(tiny_model.config)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _write_run(folder, steps, validate_every=2):
    log = MetricsLog(folder / "metrics.jsonl", keep_until=0)
    for s in range(1, steps + 1):
        log.write({"step": s, "loss": 5.0 / s, "objective": "infonce" if s < 3 else "hardest", "accuracy": s / 10, "lr": 1e-3})
        if s % validate_every == 0:
            log.write({"validation": {"step": s, "rsum": 10.0 * s}})
    return folder / "metrics.jsonl"


def _brute_worst(sims, direction, n, distinct):
    """Ranks one query at a time: wrong candidates scoring at least as high as the best truth, + 1."""
    rows = []
    if direction == "t2i":
        for j in range(sims.shape[1]):
            truth = sims[j // CPI, j]
            rows.append((sum(1 for i in range(sims.shape[0]) if i != j // CPI and sims[i, j] >= truth) + 1, j))
    else:
        for i in range(sims.shape[0]):
            best = max(sims[i, i * CPI : (i + 1) * CPI])
            rows.append((sum(1 for j in range(sims.shape[1]) if j // CPI != i and sims[i, j] >= best) + 1, i))
    rows.sort(key=lambda r: (-r[0], r[1]))
    if direction == "t2i" and distinct:  # keep each image's worst caption only
        rows = [r for k, r in enumerate(rows) if all(r[1] // CPI != s[1] // CPI for s in rows[:k])]
    return rows[:n]


@pytest.mark.parametrize("direction,distinct", [("t2i", True), ("t2i", False), ("i2t", True)])
def test_worst_queries_match_brute_force(direction, distinct):
    g = torch.Generator().manual_seed(0)
    sims = torch.randint(0, 6, (6, 6 * CPI), generator=g).float()  # small integers: many ties
    got = viz.worst_queries(sims, direction, n=5, captions_per_image=CPI, distinct=distinct)
    assert [(r["rank"], r["query"]) for r in got] == _brute_worst(sims, direction, 5, distinct)
    for r in got:
        column = sims[:, r["query"]] if direction == "t2i" else sims[r["query"]]
        assert column[r["first"]] == column.max()
    with pytest.raises(ValueError, match="direction"):
        viz.worst_queries(sims, "both")


def test_pca_2d_matches_an_svd_up_to_sign():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 7.0
    got = viz.pca_2d(x)
    centred = x - x.mean(0)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    expected = u[:, :2] * s[:2]  # (N, 2)
    signs = torch.sign((got * expected).sum(0))
    torch.testing.assert_close(got, expected * signs, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(viz.pca_2d(x), got)  # deterministic
    with pytest.raises(ValueError, match="pca_2d"):
        viz.pca_2d(torch.zeros(2, 5))


def test_live_plot_follows_the_newest_run_and_redraws_every_n_steps(tmp_path):
    _write_run(tmp_path / "old", 4)
    new = _write_run(tmp_path / "new", 6)
    live = viz.LivePlot(tmp_path, every=2, total_steps=10, show=False)
    for step in range(1, 7):
        live(SimpleNamespace(step=step), None)
    assert live.metrics_path() == new and live.steps_seen == 6 and live.redraws == 3
    fig = live.finish(tmp_path / "old" / "metrics.jsonl")
    assert "step 4 of 10" in fig._suptitle.get_text()
    assert fig.axes[0].get_xlim()[0] == 0 and 10 <= fig.axes[0].get_xlim()[1] <= 10.5


def test_live_plot_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="every"):
        viz.LivePlot(tmp_path, every=0)
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        viz.LivePlot(tmp_path).metrics_path()


def test_query_scores_equal_the_split_scores_of_the_same_caption(tiny_model, split, scored, tokenizer):
    encoded, sims = scored
    caption = split[2]["captions"][1]  # caption 2 * 5 + 1 of the split
    got = viz.query_scores(tiny_model, encoded, caption, tokenizer)
    torch.testing.assert_close(got, sims[:, 2 * CPI + 1], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="non-empty"):
        viz.query_scores(tiny_model, encoded, "  ", tokenizer)


def test_retrieval_figures_draw(split, scored):
    _, sims = scored
    assert len(viz.retrieval_figure(split, sims, k=3).axes) == 4 * 4
    assert len(viz.image_to_text_figure(split, sims, [0, 5], k=3).axes) == 2 * 2
    assert len(viz.similarity_figure(sims, n_images=8).axes) == 2  # the matrix and its colour bar
    for direction, name in (("t2i", "text->image"), ("i2t", "image->text")):
        fig = viz.failures_figure(split, sims, direction, n=2, k=2)
        assert len(fig.axes) == 2 * 4 and f"worst {name} retrieval failures" in fig._suptitle.get_text()
    assert len(viz.text_query_figure(split, sims[:, 0], "a query", k=3, truth=0).axes) == 3
    with pytest.raises(ValueError, match="sims must be"):
        viz.image_to_text_figure(split, sims[:, :10])


def test_attention_figure_draws_every_level(tiny_model, split, scored, tokenizer):
    encoded, _ = scored
    levels = len(tiny_model.config.levels)
    fig = viz.attention_figure(split, encoded, tiny_model.config, image=1, caption=5, tokenizer=tokenizer, max_words=4,
                               shared_scale=False)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]  # one colour scale per level
    assert len(bars) == levels and len(fig.axes) == levels * 5 + levels
    assert all(bar.get_ylabel() == "weight" for bar in bars)
    assert "regions attend to words (direction='i2t')" in fig._suptitle.get_text()  # tiny: the paper's direction
    fig = viz.attention_figure(split, encoded, tiny_model.config, image=1, caption=5, tokenizer=tokenizer, max_words=4)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]  # the default: one scale for every level
    assert len(bars) == 1 and len(fig.axes) == levels * 5 + 1
    overlays = [ax.images[1].get_clim() for ax in fig.axes if len(ax.images) == 2]  # (vmin, vmax) of each word panel
    assert len(overlays) == levels * 4 and len(set(overlays)) == 1
    word = tokenizer.tokenize(split[1]["captions"][0])[0]
    fig = viz.attention_figure(split, encoded, tiny_model.config, 1, 5, tokenizer, words=[word])
    assert len(fig.axes) == levels * 2 + 1
    with pytest.raises(ValueError, match="not tokens"):
        viz.attention_figure(split, encoded, tiny_model.config, 1, 5, tokenizer, words=["zebra"])


def test_embedding_projection_draws(split):
    g = torch.Generator().manual_seed(0)
    images, captions = torch.randn(8, 16, generator=g), torch.randn(40, 16, generator=g)
    colours = [json.loads(s)["subject"]["colour"] for s in split["scene"]]
    assert len(viz.embedding_projection(images, captions, colours, label_name="colour").axes) == 3
    assert len(viz.embedding_projection(images, captions).axes) == 1
    with pytest.raises(ValueError, match="captions for"):
        viz.embedding_projection(images, captions[:30])
    with pytest.raises(ValueError, match="labels for"):
        viz.embedding_projection(images, captions, colours[:3])


def _controls(ui) -> dict:
    """The explorer's widgets by description ("query", "image", ...), its note under "note"."""
    import ipywidgets as widgets

    found, todo = {}, [ui]
    while todo:
        w = todo.pop()
        todo.extend(getattr(w, "children", ()))
        if isinstance(w, widgets.Label):
            found["note"] = w
        elif getattr(w, "description", ""):
            found[w.description] = w
    return found


def test_explorer_answers_a_query_and_an_image(tiny_model, split, scored, tokenizer, capsys):
    encoded, sims = scored
    ui = _controls(viz.explorer(tiny_model, split, encoded, sims, tokenizer, k=3))
    ui["query"].value = "two red circles"
    ui["image"].value = 3
    assert capsys.readouterr().out.count("Figure") == 2  # outside a kernel, display() prints each figure


def test_explorer_picks_an_image_by_id_and_by_family(tiny_model, split, scored, tokenizer, monkeypatch):
    encoded, sims = scored
    drawn, draw = [], viz.image_to_text_figure  # the images whose figure the explorer shows

    def recorded(split, sims, queries, *args):
        drawn.append(list(queries))
        return draw(split, sims, queries, *args)

    monkeypatch.setattr(viz, "image_to_text_figure", recorded)
    ui = _controls(viz.explorer(tiny_model, split, encoded, sims, tokenizer, k=3))
    families = sorted(set(split["family"]))
    rows = [[r for r, f in enumerate(split["family"]) if f == family] for family in families]
    assert len(rows) == 2 and len(rows[1]) > 2

    ui["image id"].value = rows[1][2]  # typed id: the slider, the family picker and the figure follow
    assert ui["image"].value == ui["member"].value == rows[1][2] and ui["family"].value == families[1]
    assert drawn == [[rows[1][2]]] and ui["note"].value == ""
    ui["image id"].value = 99  # out of range: the last image, and a note
    assert ui["image"].value == ui["image id"].value == 7 and drawn[-1] == [7]
    assert "no image 99 (ids run from 0 to 7)" in ui["note"].value
    ui["image id"].value = -1
    assert ui["image"].value == 0 and ui["family"].value == families[0] and "no image -1" in ui["note"].value

    ui["family"].value = families[1]  # a family: its first member
    assert ui["image"].value == ui["image id"].value == rows[1][0] and drawn[-1] == [rows[1][0]]
    ui["member"].value = rows[1][1]
    assert ui["image"].value == rows[1][1] and drawn[-1] == [rows[1][1]] and ui["note"].value == ""
    ui["image"].value = rows[0][1]  # the slider moves the family picker too
    assert ui["family"].value == families[0] and ui["member"].value == rows[0][1] and ui["image id"].value == rows[0][1]
    assert drawn == [[rows[1][2]], [7], [0], [rows[1][0]], [rows[1][1]], [rows[0][1]]]  # one figure per pick


def test_explorer_without_families_has_no_family_picker(tiny_model, split, scored, tokenizer):
    encoded, sims = scored
    ui = _controls(viz.explorer(tiny_model, split.remove_columns("family"), encoded, sims, tokenizer, k=3))
    assert "family" not in ui and "member" not in ui
    ui["image id"].value = 5
    assert ui["image"].value == 5


def _scene(subject_boxes, object_boxes, relation="above"):
    group = {"count": 1, "size": "small", "texture": "plain", "shape": "circle"}
    return {"relation": relation, "subject": {**group, "colour": "red"}, "object": {**group, "colour": "blue"},
            "boxes": {"subject": subject_boxes, "object": object_boxes}}


def test_relations_follow_the_generators_layout(split):
    for s in split["scene"]:  # the generator lays every scene out so that its own relation holds
        assert json.loads(s)["relation"] in scenes.relations_between(s)
    aligned = _scene([[10, 5, 20, 15], [30, 5, 40, 15]], [[15, 40, 25, 50]])  # red row above a blue one, overlapping in x
    diagonal = _scene([[5, 5, 15, 15]], [[40, 40, 50, 50]])                   # red top left, blue bottom right
    assert scenes.relations_between(aligned) == {"above"} and not scenes.is_diagonal(aligned)
    assert scenes.relations_between(diagonal) == {"above", "left of"} and scenes.is_diagonal(diagonal)
    assert scenes.relations_between(diagonal, "object", "subject") == {"below", "right of"}


def test_a_captions_relation_is_read_with_the_scenes_colours(split):
    for s, captions in zip(split["scene"], split["captions"]):  # every own caption is true of its image
        assert all(scenes.caption_relation_holds(s, c) is True for c in captions)
    diagonal = _scene([[5, 5, 15, 15]], [[40, 40, 50, 50]])
    assert scenes.caption_relation_holds(diagonal, "a small blue circle to the right of a small red circle") is True
    assert scenes.caption_relation_holds(diagonal, "a small blue circle above a small red circle") is False
    assert scenes.caption_relation_holds(diagonal, "a small green circle above a small red circle") is None
    for s, captions in zip(split["scene"], split["captions"]):  # every own caption is true in every word
        assert all(scenes.caption_errors(s, c) == [] for c in captions)
    assert all(scenes.caption_errors(split[0]["scene"], c) for c in split[4]["captions"])  # another family: some error
    assert scenes.caption_errors(diagonal, "a small blue circle to the right of a small red circle") == []  # the other axis
    assert scenes.caption_errors(diagonal, "two large blue circles above a small red circle") == ["count", "size", "relation"]
    assert scenes.caption_errors(diagonal, "a small dotted blue star above a small red circle") == ["texture", "shape", "relation"]
    assert scenes.caption_errors(diagonal, "a small green circle above a small red circle") == ["colour"]


def test_a_true_relation_of_the_other_axis_is_counted(split, monkeypatch):
    diagonal = json.dumps(_scene([[5, 5, 15, 15]], [[40, 40, 50, 50]]))  # captions of it say "red above blue"
    two = split.select([0, 1]).remove_columns("scene").add_column("scene", [diagonal, split[1]["scene"]])
    sims = torch.zeros(2, 2 * CPI)
    sims[0, 5] = sims[1, 5] = 1.0  # both images rank caption 5 (image 1's) first: image 0 misses
    monkeypatch.setattr("hat_min.tutorial.scenes.eval_captions", lambda split, cpi: [
        "a small red circle above a small blue circle"] * 5 + ["a small red circle to the left of a small blue circle"] * 5)
    assert scenes.miss_errors(two, sims, "i2t") == {"misses": 1, "nothing": 1, "other axis": 1}


def test_diagonal_failures_count_like_a_loop(split):
    g = torch.Generator().manual_seed(1)
    sims = torch.rand(8, 8 * CPI, generator=g)
    table = scenes.diagonal_failures(split, sims, n_shown=2)
    diagonal = [scenes.is_diagonal(s) for s in split["scene"]]
    i2t_miss = [i for i in range(8) if int(sims[i].argmax()) // CPI != i]
    t2i_miss = [j // CPI for j in range(8 * CPI) if int(sims[:, j].argmax()) != j // CPI]
    for name, images in (("all test images", range(8)), ("image->text R@1 misses", i2t_miss),
                         ("text->image R@1 misses (true images)", t2i_miss)):
        assert table.loc[name, "images"] == len(images)
        assert table.loc[name, "diagonal"] == sum(diagonal[i] for i in images)
    assert table.loc["worst 2 image->text (shown)", "images"] == 2


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_miss_errors_tally_the_misses_like_a_loop(split, direction):
    g = torch.Generator().manual_seed(1)
    sims = torch.rand(8, 8 * CPI, generator=g)
    sims[0, 0] = sims[1, 7] = 2.0  # image 0 and caption 0 hits; image 1 and caption 7 misses
    got = scenes.miss_errors(split, sims, direction)
    caption = lambda j: split[j // CPI]["captions"][j % CPI]  # noqa: E731
    if direction == "i2t":
        pairs = [(i, int(sims[i].argmax())) for i in range(8)]
    else:
        pairs = [(int(sims[:, j].argmax()), j) for j in range(8 * CPI)]
    errors = [scenes.caption_errors(split[i]["scene"], caption(j)) for i, j in pairs if j // CPI != i]
    assert got["misses"] == len(errors) and 1 <= len(errors) < len(pairs)
    assert got["nothing"] == sum(not e for e in errors)
    assert {k: v for k, v in got.items() if k not in ("misses", "nothing", "other axis")} == {
        k: sum(k in e for e in errors) for k in {k for e in errors for k in e}}
    assert list(got.values())[3:] == sorted(list(got.values())[3:], reverse=True)  # most frequent first
    assert 0 <= got["other axis"] <= got["misses"] - sum("relation" in e or "colour" in e for e in errors)
    with pytest.raises(ValueError, match="direction"):
        scenes.miss_errors(split, sims, "both")


def test_neighbour_label_accuracy_sees_clusters_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = ["a"] * 100 + ["b"] * 100
    apart = torch.cat([torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g) + 10])  # (200, 2)
    accuracy, chance = viz.neighbour_label_accuracy(apart, labels, k=5)
    assert accuracy == 100.0 and 30 < chance < 70
    mixed = torch.randn(200, 2, generator=g)
    assert 30 < viz.neighbour_label_accuracy(mixed, labels, k=5)[0] < 70
    # five copies of each point share its label: clustered, unless the copies (one group) are left out
    copies = mixed.repeat_interleave(5, 0) + 1e-3 * torch.randn(1000, 2, generator=g)
    tags = [label for label in labels for _ in range(5)]
    assert viz.neighbour_label_accuracy(copies, tags, k=3)[0] > 95
    assert 30 < viz.neighbour_label_accuracy(copies, tags, groups=[i // 5 for i in range(1000)], k=3)[0] < 70
    with pytest.raises(ValueError, match="labels"):
        viz.neighbour_label_accuracy(mixed, labels[:10])


def test_the_levels_alone_add_up_to_the_score(tiny_model, scored):
    from hat_min.evaluation.protocols import similarity

    encoded, sims = scored
    alone = [viz.level_similarity(tiny_model.config, encoded, level, progress=False, device="cpu")
             for level in range(len(tiny_model.config.levels))]
    torch.testing.assert_close(sum(alone), similarity(tiny_model, encoded, progress=False, device="cpu"),
                               atol=1e-4, rtol=1e-4)
    assert all(a.shape == sims.shape for a in alone)
