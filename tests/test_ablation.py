"""Ablations: the grid, the assembly of runs into rows (ensembles are sums), mean / sd, contrasts, caching."""
import copy
import math

import pandas as pd
import pytest
import torch

from data_prep.synthetic import generate
from hat_min import HATConfig, recall_at_k
from hat_min.tutorial import ablation
from hat_min.tutorial.ablation import (ABLATION_MODEL, ABLATION_TRAIN, FAMILY_METRICS, HAT_MARK, METRICS, SUMMARY_METRICS,
                                      SUMMARY_PARTS, family_draws, bootstrap_se,
                                      ablation_grid, contrasts, describe, distinct_configs, grid_table, run_ablation,
                                      summarize, summary_metrics)
from hat_min.evaluation import chance_recall

# A very small model from scratch (three Swin stages, the token grids of the real base) and two training
# steps: each run takes well under a second.
MODEL = HATConfig.preset("tiny", swin_patch=8, swin_embed_dim=8, swin_depths=(1, 1, 1), swin_heads=(1, 1, 1),
                         levels=((1, 2), (2, 3), (3, 4)), text_width=16, text_heads=1, embed_dim=16)
TWO_STEPS = ABLATION_TRAIN.replace(max_steps=2, batch_size=8, val_images=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "scenes"
    generate(n_train=4, n_val=4, n_test=8, seed=3, progress=False).save_to_disk(str(path))  # 20 pairs
    return path


def _small_grid(base):
    t2i = base.replace(direction="t2i")
    return {"levels": {"top 1": base.replace(levels=base.levels[-1:]), f"all 3 {HAT_MARK}": base},
            "direction": {f"i2t {HAT_MARK}": base, "i2t + t2i": (base, t2i)}}


def test_grid_asks_three_questions_of_the_base():
    grid = ablation_grid(ABLATION_MODEL, lambdas=(1, 4))
    assert list(grid) == ["levels", "direction", "lambda"]
    assert list(grid["levels"]) == ["top 1", "top 2", f"all 3 {HAT_MARK}", "no top (2)"]
    assert [c.levels for c in grid["levels"].values()] == [ABLATION_MODEL.levels[-1:], ABLATION_MODEL.levels[-2:],
                                                          ABLATION_MODEL.levels, ABLATION_MODEL.levels[:-1]]
    assert list(grid["lambda"]) == ["lambda 1", "lambda 4", f"lambda 9 {HAT_MARK}"]  # the base's own value added
    assert grid["direction"]["i2t + t2i"] == (ABLATION_MODEL, ABLATION_MODEL.replace(direction="t2i"))
    for group in grid.values():  # HAT's own setting, once per question, marked
        marked = [name for name in group if name.endswith(HAT_MARK)]
        assert len(marked) == 1 and group[marked[0]] == ABLATION_MODEL
    assert len(distinct_configs(grid)) == 4 + 1 + 2  # levels (the base among them), t2i, lambda 1 and 4
    table = grid_table(grid)
    assert len(table) == 4 + 3 + 3 and table.loc[table.variant == "i2t + t2i", "direction"].item() == "i2t + t2i"
    assert table.loc[table.variant == "top 1", "levels (stage, layer)"].item() == str(ABLATION_MODEL.levels[-1:])


def test_grid_refuses_a_base_that_is_not_hat():
    with pytest.raises(ValueError, match="direction 'i2t'"):
        ablation_grid(ABLATION_MODEL.replace(direction="t2i"))
    with pytest.raises(ValueError, match="at least two levels"):
        ablation_grid(ABLATION_MODEL.replace(levels=((3, 4),)))
    with pytest.raises(ValueError, match="positive"):
        ablation_grid(ABLATION_MODEL, lambdas=(0, 9))


def test_rows_are_the_runs_and_ensembles_sum_their_models(monkeypatch, tmp_path):
    """With the training replaced by seeded random similarities: each row is recall_at_k of its
    model's matrix, an ensemble's row that of the sum, and a config shared by variants runs once."""
    calls = []

    def sims_of(cfg, seed):
        g = torch.Generator().manual_seed(1000 * seed + len(cfg.levels) + 10 * (cfg.direction == "t2i"))
        return torch.rand(6, 30, generator=g)  # (N_img, N_cap)

    def fake_sims(cfg, train_config, data_dir, test, cache_dir):
        calls.append((cfg, train_config.seed))
        return sims_of(cfg, train_config.seed), False

    monkeypatch.setattr(ablation, "load_splits", lambda path: {"test": None})
    monkeypatch.setattr(ablation, "_test_sims", fake_sims)
    base = MODEL
    runs = run_ablation(_small_grid(base), TWO_STEPS, tmp_path, seeds=(0, 1), progress=False)
    assert len(calls) == 3 * 2  # base, top 1, t2i; each per seed, the base once although in both questions
    assert len(runs) == 4 * 2 and runs.attrs == {"trained": 6, "cached": 0}
    assert list(runs.columns) == ["question", "variant", "seed", "models", "levels", "direction", "lambda", *METRICS,
                                  "failed"]  # no family metrics: this split has no families
    assert len(set(calls)) == len(calls)
    row = runs[(runs.variant == "i2t + t2i") & (runs.seed == 1)].iloc[0]
    expected = recall_at_k(sims_of(base, 1) + sims_of(base.replace(direction="t2i"), 1))
    assert [row[m] for m in METRICS] == pytest.approx([expected[m] for m in METRICS])
    assert (row["models"], row["direction"], row["levels"]) == (2, "i2t+t2i", 3)
    row = runs[(runs.variant == "top 1") & (runs.seed == 0)].iloc[0]
    assert row["rsum"] == pytest.approx(recall_at_k(sims_of(base.replace(levels=base.levels[-1:]), 0))["rsum"])


def test_run_ablation_trains_once_and_then_reads_the_cache(data, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    grid = _small_grid(MODEL)
    del grid["levels"]["top 1"]  # two configs (i2t, t2i) in three variants
    runs = run_ablation(grid, TWO_STEPS, data, seeds=(0, 1), cache_dir=cache, progress=False)
    family = [c for c in runs.columns if c.startswith("family_")]  # 2 families: the kinds of swap they hold
    assert {"family_i2t", "family_t2i", "family_mean"} <= set(family) <= {*FAMILY_METRICS, *SUMMARY_METRICS}
    assert runs["family_mean"].tolist() == pytest.approx(((runs["family_i2t"] + runs["family_t2i"]) / 2).tolist())
    assert runs.shape == (3 * 2, 7 + len(METRICS) + len(family) + 1)
    assert runs[list(METRICS)].notna().all().all() and runs["rsum"].between(0, 600).all()
    assert runs[family].notna().all().all() and runs[family].stack().between(0, 100).all()
    assert runs["failed"].dtype == bool
    assert set(runs["seed"]) == {0, 1} and runs.groupby("variant").size().eq(2).all()
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert len([p for p in cache.iterdir() if p.name != "sims"]) == 2 * 2  # one training run per config and seed

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(ablation, "train_or_load", no_training)
    again = run_ablation(grid, TWO_STEPS, data, seeds=(0, 1), cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(again, runs)
    assert [(t.attrs["trained"], t.attrs["cached"]) for t in (runs, again)] == [(4, 0), (0, 4)]
    # pandas compares and copies attrs when tables are combined or reshaped (the notebook's plots do both)
    assert len(pd.concat([runs, again])) == 2 * len(runs) and len(runs.melt(id_vars=["variant"])) > 0
    assert copy.deepcopy(runs).attrs["family_counts"] is runs.attrs["family_counts"]
    # the per-family counts kept for the test-set standard error add up to each row's family metrics
    for row in runs.itertuples():
        counts = runs.attrs["family_counts"][row.question, row.variant, row.seed]
        assert set(counts) == {m for m in FAMILY_METRICS if m in runs.columns}
        for m, c in counts.items():
            assert 100 * c[:, 0].sum() / c[:, 1].sum() == pytest.approx(getattr(row, m))
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == files


def test_summarize_gives_mean_and_sample_sd_per_variant():
    runs = pd.DataFrame({"question": ["q"] * 5 + ["r"] * 2, "variant": ["b"] * 3 + ["a"] * 2 + ["c"] * 2,
                         "seed": [0, 1, 2, 0, 1, 0, 1], "rsum": [10.0, 20.0, 60.0, 5.0, 5.0, 1.0, 2.0]})
    table = summarize(runs, metrics=["rsum"])
    assert list(table.index) == [("q", "b"), ("q", "a"), ("r", "c")]  # the grid's order, not sorted
    assert table.loc[("q", "b"), ("rsum", "mean")] == pytest.approx(30.0)
    assert table.loc[("q", "b"), ("rsum", "sd")] == pytest.approx(math.sqrt((400 + 100 + 900) / 2))  # n - 1
    assert table.loc[("q", "a"), ("rsum", "sd")] == 0.0
    assert table.loc[("r", "c"), ("rsum", "sd")] == pytest.approx(math.sqrt(0.5))
    assert list(table[("seeds", "n")]) == [3, 2, 2]


def test_contrasts_pair_the_seeds():
    runs = pd.DataFrame({"question": ["q"] * 6, "variant": [f"x {HAT_MARK}"] * 3 + ["y"] * 3, "seed": [0, 1, 2] * 2,
                         "rsum": [10.0, 12.0, 14.0, 20.0, 21.0, 22.0]})
    row = contrasts(runs).iloc[0]  # the reference defaults to the marked variant
    se = 1 / math.sqrt(3)  # per-seed differences 10, 9, 8: sd 1 over 3 pairs
    assert (row["variant"], row["reference"], row["pairs"]) == ("y", f"x {HAT_MARK}", 3)
    assert row["difference"] == pytest.approx(9.0) and row["se"] == pytest.approx(se)
    assert row["ratio"] == pytest.approx(9.0 / se) and row["verdict"] == "higher"
    assert describe(row) == (f"**y**: rSum 21.0, 9.0 points above **x {HAT_MARK}** "
                             f"(se of the paired difference {se:.1f}; beyond noise: {9.0 / se:.1f} se)")
    # a difference the seeds disagree on: +1, 0, +2 -> within noise
    close = runs.assign(rsum=[10.0, 12.0, 14.0, 11.0, 12.0, 16.0])
    row = contrasts(close, {"q": f"x {HAT_MARK}"}, metric="rsum").iloc[0]
    assert row["verdict"] == "within noise" and "1.0 points above" in describe(row)
    # pairing removes what the seeds share: a large spread over seeds, a steady difference
    steady = runs.assign(rsum=[10.0, 50.0, 90.0, 12.0, 52.0, 93.0])
    row = contrasts(steady).iloc[0]
    assert row["se"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3)) and row["verdict"] == "higher"
    with pytest.raises(ValueError, match="no variant 'z'"):
        contrasts(runs, {"q": "z"})


def test_contrasts_agree_with_a_literal_paired_difference():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(2, 5, generator=g).double() * 100  # (variant, seed)
    runs = pd.DataFrame({"question": "q", "variant": [f"r {HAT_MARK}"] * 5 + ["v"] * 5, "seed": list(range(5)) * 2,
                         "rsum": values.flatten().tolist()})
    d = values[1] - values[0]
    row = contrasts(runs).iloc[0]
    assert row["difference"] == pytest.approx(d.mean().item())
    assert row["se"] == pytest.approx((d.std() / math.sqrt(5)).item())


def _counts_table(hits, queries=10.0):
    """A runs table for question "q", variants "r (HAT)" and "v", seeds 0..S-1, whose family_binding comes from
    per-family hits ``hits`` (variant, seed, part, family) out of ``queries`` each, with the counts in attrs."""
    n_var, n_seeds, n_parts, n_fam = hits.shape
    parts = SUMMARY_PARTS["family_binding"]
    assert n_parts == len(parts)
    names, rows, counts = [f"r {HAT_MARK}", "v"], [], {}
    for v in range(n_var):
        for s in range(n_seeds):
            c = {p: torch.stack([hits[v, s, k], torch.full((n_fam,), queries)], dim=1) for k, p in enumerate(parts)}
            counts["q", names[v], s] = c
            value = sum(100 * x[:, 0].sum().item() / x[:, 1].sum().item() for x in c.values()) / len(parts)
            rows.append({"question": "q", "variant": names[v], "seed": s, "family_binding": value})
    runs = pd.DataFrame(rows)
    runs.attrs["family_counts"] = counts
    return runs


def test_bootstrap_se_agrees_with_a_literal_bootstrap_over_families():
    g = torch.Generator().manual_seed(1)
    hits = torch.randint(0, 11, (2, 3, 6, 12), generator=g).double()  # (variant, seed, part, family) of 10 queries
    runs = _counts_table(hits)
    draws = family_draws(12, 300, seed=0)  # (D, F)
    picks = [[f for f in range(12) for _ in range(int(draws[d, f]))] for d in range(300)]  # the families of each draw
    literal = []
    for fams in picks:
        def binding(v, s):
            return sum(100 * sum(hits[v, s, k, f].item() for f in fams) / (10 * len(fams)) for k in range(6)) / 6
        literal.append(sum(binding(1, s) - binding(0, s) for s in range(3)) / 3)
    expected = torch.tensor(literal, dtype=torch.float64).std().item()
    got = bootstrap_se(runs, "q", "v", f"r {HAT_MARK}", [0, 1, 2], "family_binding", draws=300, seed=0)
    assert got == pytest.approx(expected, rel=1e-9)
    assert all(int(draws[d].sum()) == 12 for d in range(300))  # each draw resamples F families


def test_contrasts_add_the_test_sets_error_and_judge_on_both():
    g = torch.Generator().manual_seed(2)
    base = torch.randint(0, 11, (1, 3, 6, 40), generator=g).double()
    # a variant whose seeds agree closely (+1 hit in every family and part) but whose test families are few
    runs = _counts_table(torch.cat([base, (base + 1).clamp(max=10)]))
    row = contrasts(runs, metric="family_binding").iloc[0]
    assert row["se_test"] > 0 and math.isfinite(row["se_test"])
    assert row["se_total"] == pytest.approx(math.hypot(row["se"], row["se_test"]))
    assert row["ratio"] == pytest.approx(row["difference"] / row["se_total"])
    assert "over test families" in describe(row)
    # the same difference, measured on four times as many families: the test-set error halves
    many = _counts_table(torch.cat([base.repeat(1, 1, 1, 4), (base.repeat(1, 1, 1, 4) + 1).clamp(max=10)]))
    ratio = contrasts(many, metric="family_binding").iloc[0]["se_test"] / row["se_test"]
    assert 0.4 < ratio < 0.6
    # identical variants: no difference and no test-set error
    same = _counts_table(torch.cat([base, base]))
    row = contrasts(same, metric="family_binding").iloc[0]
    assert row["difference"] == 0 and row["se_test"] == 0 and row["verdict"] == "within noise"
    # without family counts (or for rSum) the seeds' error alone
    plain = runs.copy()
    plain.attrs = {}
    row = contrasts(plain, metric="family_binding").iloc[0]
    assert math.isnan(row["se_test"]) and row["se_total"] == row["se"]


def test_failed_runs_are_flagged_counted_and_left_out_of_the_pairs(monkeypatch, tmp_path):
    chance = chance_recall(40)["rsum"]

    def fake_sims(cfg, train_config, data_dir, test, cache_dir):
        if len(cfg.levels) == 1 and train_config.seed == 1:  # "top 1", seed 1: a collapsed run (all scores equal)
            return torch.zeros(40, 200), False
        return torch.eye(40).repeat_interleave(5, dim=1) + 0.01 * torch.rand(40, 200), False  # perfect runs

    monkeypatch.setattr(ablation, "load_splits", lambda path: {"test": None})
    monkeypatch.setattr(ablation, "_test_sims", fake_sims)
    runs = run_ablation(_small_grid(MODEL), TWO_STEPS, tmp_path, seeds=(0, 1, 2), progress=False)
    failed = runs[runs["failed"]]
    assert list(zip(failed["variant"], failed["seed"])) == [("top 1", 1)]
    assert failed["rsum"].item() < chance + 0.05 * (600 - chance) and runs.loc[~runs["failed"], "rsum"].eq(600).all()
    assert summarize(runs).loc[("levels", "top 1"), ("failed", "n")] == 1
    row = contrasts(runs).set_index("variant").loc["top 1"]
    assert row["pairs"] == 2 and row["difference"] == pytest.approx(0.0)  # seeds 0 and 2 only


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks the column"):
        summarize(pd.DataFrame({"question": ["q"], "variant": ["v"], "seed": [0]}))
    with pytest.raises(ValueError, match="empty"):
        summarize(pd.DataFrame(columns=["question", "variant", "seed", *METRICS]))
    with pytest.raises(TypeError, match="must be a HATConfig"):
        run_ablation({"q": {"v": "tiny"}}, TWO_STEPS, tmp_path)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        run_ablation(_small_grid(MODEL), TWO_STEPS, tmp_path, seeds=(0, 0))
    with pytest.raises(ValueError, match="at least one variant"):
        run_ablation({"q": {}}, TWO_STEPS, tmp_path)


def test_summary_metrics_are_the_means_over_both_directions():
    family = {"family_i2t": 80.0, "family_t2i": 60.0, "family_i2t_role": 50.0, "family_t2i_role": 54.0,
              "family_i2t_colour": 90.0, "family_t2i_colour": 70.0, "family_i2t_texture": 60.0,
              "family_t2i_texture": 62.0, "family_i2t_size": 100.0, "family_t2i_size": 50.0}
    assert summary_metrics(family) == pytest.approx({"family_mean": 70.0, "family_role": 52.0,
                                                     "family_binding": (90 + 70 + 60 + 62 + 100 + 50) / 6})
    del family["family_t2i_size"]  # a split without every kind of binding swap: no binding mean
    assert set(summary_metrics(family)) == {"family_mean", "family_role"}
    assert summary_metrics({}) == {}  # no families (Flickr30K)
    assert set(SUMMARY_METRICS) == {"family_mean", "family_role", "family_binding"}
