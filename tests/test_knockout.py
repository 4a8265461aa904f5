"""Level knock-out (hat_min.evaluation.knockout, hat_min.tutorial.knockout) against full scoring."""
import math

import pytest
import torch

from hat_min import HAT
from hat_min.evaluation import evaluate
from hat_min.evaluation.compositional import family_accuracy, family_labels
from hat_min.evaluation.knockout import family_level_scores, family_pairs, level_subsets
from hat_min.tutorial.ablation import FAMILY_METRICS, SUMMARY_METRICS, contrasts, describe, summarize
from hat_min.tutorial.knockout import KNOCKOUT, knockout, subset_name


@pytest.fixture(scope="module")
def generated_test():
    from data_prep.synthetic import generate

    return generate(n_train=4, n_val=4, n_test=24, progress=False)["test"]


@pytest.fixture(scope="module")
def three_levels(tiny_model):
    """The tiny model with random but distinct per-level weights, so that leaving a level out changes the scores."""
    model = HAT(tiny_model.config.replace(level_weights=(0.5, 1.0, 2.0))).eval()
    model.load_state_dict(tiny_model.state_dict())
    assert len(model.config.levels) == 3
    return model


def test_family_pairs_are_exactly_the_pairs_inside_families(generated_test):
    labels = family_labels(generated_test)
    images, captions = family_pairs(labels, captions_per_image=5)
    family = labels.family.tolist()
    literal = {(i, c) for i in range(len(family)) for c in range(5 * len(family)) if family[i] == family[c // 5]}
    assert set(zip(images.tolist(), captions.tolist())) == literal
    assert len(images) == len(literal)  # each pair once


def test_level_subsets_cover_every_subset_once():
    subsets = level_subsets(3)
    assert subsets[0] == (0, 1, 2) and subsets[1:4] == [(1, 2), (0, 2), (0, 1)] and subsets[4:] == [(2,), (1,), (0,)]
    assert len(level_subsets(4)) == 15 and len(set(level_subsets(4))) == 15


@pytest.mark.parametrize("subset", [(0, 1, 2), (2,), (0, 2)])
def test_a_subset_scores_as_the_model_with_only_those_levels_weighted(generated_test, three_levels, subset):
    """Brute force: the full similarity matrix of the same weights with the other levels' weights set to 0."""
    scores = family_level_scores(three_levels, generated_test)
    cfg = three_levels.config
    kept = tuple(w if level in subset else 0.0 for level, w in enumerate(cfg.weights))
    alone = HAT(cfg.replace(level_weights=kept)).eval()
    alone.load_state_dict(three_levels.state_dict())
    full = evaluate(alone, generated_test, progress=False, return_sims=True)["sims"]  # (N_img, N_cap)
    sims = scores.sims(subset)
    inside = torch.isfinite(sims)
    assert inside.sum() == len(scores.images)
    torch.testing.assert_close(sims[inside], full[inside], atol=1e-4, rtol=1e-4)
    expected = family_accuracy(full, family_labels(generated_test))
    got = scores.metrics(subset)
    for name, value in got.items():
        assert value == pytest.approx(expected[name]), name
    assert {m for m in expected if m.startswith(("family_", "winoground_"))} == set(got)


def test_knockout_rows_and_their_contrasts(generated_test, three_levels):
    table = knockout(three_levels, generated_test)
    assert list(table["variant"]) == [subset_name(s, 3) for s in level_subsets(3)]
    assert table["variant"].iloc[0] == "levels 1+2+3 (HAT)" and table["variant"].iloc[-1] == "level 1"
    assert set(table["question"]) == {KNOCKOUT} and set(table["seed"]) == {0}
    assert {*FAMILY_METRICS, *SUMMARY_METRICS, "winoground_group"} <= set(table.columns)
    scores = family_level_scores(three_levels, generated_test)
    row = table.set_index("variant").loc["levels 2+3"]
    assert row["family_i2t"] == pytest.approx(scores.metrics((1, 2))["family_i2t"])
    checks = contrasts(table, metric="family_mean")
    assert len(checks) == 6 and set(checks["reference"]) == {"levels 1+2+3 (HAT)"}
    assert (checks["pairs"] == 1).all() and (checks["se"] == 0).all()
    assert checks["se_test"].map(math.isfinite).all()
    top = checks.set_index("variant").loc["level 3"]
    assert top["difference"] == pytest.approx(row_of(table, "level 3") - row_of(table, "levels 1+2+3 (HAT)"))
    assert "one trained model" in describe(checks.iloc[0])
    assert summarize(table, metrics=["family_mean"])[("seeds", "n")].eq(1).all()


def row_of(table, variant, metric="family_mean"):
    return float(table.loc[table["variant"] == variant, metric].iloc[0])


def test_without_families_every_subset_gets_recall_of_its_own_weighted_sum(generated_test, three_levels):
    """Flickr30K-like (no scene column): Recall@K of each subset equals full evaluation with the other levels' weights 0."""
    flickr_like = generated_test.remove_columns(["scene", "family"])
    table = knockout(three_levels, flickr_like)
    assert len(table) == 7 and "family_mean" not in table.columns
    cfg = three_levels.config
    for subset in [(0, 1, 2), (1,), (0, 2)]:
        alone = HAT(cfg.replace(level_weights=tuple(w if i in subset else 0.0 for i, w in enumerate(cfg.weights)))).eval()
        alone.load_state_dict(three_levels.state_dict())
        expected = evaluate(alone, flickr_like, progress=False)
        row = table.set_index("variant").loc[subset_name(subset, 3)]
        for metric in ("i2t_r1", "t2i_r5", "rsum"):
            assert row[metric] == pytest.approx(expected[metric]), (subset, metric)


def test_a_split_without_families_is_refused_in_one_sentence(generated_test, three_levels):
    with pytest.raises(ValueError, match="needs a split with `family` and `scene`"):
        family_level_scores(three_levels, generated_test.remove_columns(["scene"]))


def test_a_bad_subset_is_refused(generated_test, three_levels):
    scores = family_level_scores(three_levels, generated_test)
    for bad in [(), (3,), (1, 1)]:
        with pytest.raises(ValueError, match="distinct level indices"):
            scores.sims(bad)


def test_cached_scores_are_read_back_and_keyed_by_the_weights(generated_test, three_levels, tmp_path, monkeypatch):
    import hat_min.evaluation.knockout as knockout_module

    first = family_level_scores(three_levels, generated_test, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again: the cache was not read")

    monkeypatch.setattr(knockout_module, "encode", no_encoding)
    again = family_level_scores(three_levels, generated_test, cache_dir=tmp_path)
    torch.testing.assert_close(again.per_level, first.per_level)
    assert again.metrics((0, 1, 2)) == first.metrics((0, 1, 2))
    changed = HAT(three_levels.config).eval()
    changed.load_state_dict(three_levels.state_dict())
    with torch.no_grad():
        changed.text_proj[0].weight.add_(0.01)  # other weights: another key, so it must encode (and fail here)
    with pytest.raises(AssertionError, match="encoded again"):
        family_level_scores(changed, generated_test, cache_dir=tmp_path)


def test_caption_groups_against_counting_caption_by_caption(generated_test):
    """FamilyScores.caption_groups: text-to-image accuracy per kind of swap for each group of captions, on seeded
    scores, equals counting every (caption, other family member) pair in a loop."""
    from hat_min.evaluation.compositional import KINDS
    from hat_min.evaluation.knockout import FamilyScores

    labels = family_labels(generated_test)
    images, captions = family_pairs(labels, 5)
    per_level = torch.randn(3, len(images), generator=torch.Generator().manual_seed(0))
    scores = FamilyScores(per_level, images, captions, (1.0, 0.5, 2.0), labels, 5)
    n_cap = 5 * labels.family.shape[0]
    groups = [("a", "b", "c")[c % 3] if c % 7 else "d" for c in range(n_cap)]  # uneven groups across captions
    table = scores.caption_groups(groups, (0, 2))
    sims, kind = scores.sims((0, 2)), labels.kind_matrix()
    assert list(table) == list(dict.fromkeys(groups))
    for group, row in table.items():
        assert row["captions"] == groups.count(group)
        for k, name in enumerate(KINDS):
            hits = [bool(sims[c // 5, c] > sims[j, c]) for c in range(n_cap) if groups[c] == group
                    for j in range(sims.shape[0]) if kind[c // 5, j] == k]
            assert (name in row) == bool(hits)
            if hits:
                assert row[name] == pytest.approx(100 * sum(hits) / len(hits))
    with pytest.raises(ValueError, match="groups has 3 entries"):
        scores.caption_groups(["a", "b", "c"], (0,))
