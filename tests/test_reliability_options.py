"""Bad options and bad data end as one line and exit code 2, before data or models are loaded where possible."""
import json
import math

import datasets
import pytest

from data_prep.synthetic import generate
from hat_min import HAT, HATConfig
from hat_min.__main__ import _overrides, main
from hat_min.training.data import check_for_training
from hat_min.training.recipe import TrainConfig


@pytest.fixture(scope="module")
def splits():
    return generate(n_train=8, n_val=4, n_test=6, seed=3, progress=False)


@pytest.fixture(scope="module")
def data(splits, tmp_path_factory):
    path = tmp_path_factory.mktemp("reliability") / "synthetic"
    splits.save_to_disk(str(path))
    return path


def _with_captions(split, row, captions):
    """``split`` with the captions of image ``row`` replaced."""
    return split.map(lambda item, i: {"captions": captions if i == row else item["captions"]}, with_indices=True)


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()  # progress bars of the dataset preparation
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# --------------------------------------------------------------------- 1, 2: --set values against the field types
@pytest.mark.parametrize("setting, words", [
    ("max_steps=abc", ["max_steps", "'abc'", "int or null"]),
    ("lr=fast", ["lr", "'fast'", "float"]),
    ("max_steps=2.5", ["max_steps", "'2.5'", "int"]),
    ("levels=2,2", ["levels", "'2,2'", "[[int, int], ...]"]),
    ("levels=[2,2]", ["levels", "'[2,2]'", "[[int, int], ...]"]),
    ("freeze_text=1", ["freeze_text", "true/false"]),
    ("max_steps=-1", ["max_steps", ">= 1"]),
    ("lambda_softmax=NaN", ["lambda_softmax", "nan"]),
    ("margin=Infinity", ["margin", "inf"]),
    ("levels=[[2,2],[2,2]]", ["levels", "repeat (2, 2)"]),
])
def test_bad_set_values_fail_before_data_is_read(capsys, tmp_path, setting, words):
    # --data does not exist: the option must be refused before the data is looked at
    err = _one_line_error(capsys, ["train", "--preset", "tiny", "--train-preset", "demo", "--data",
                                   str(tmp_path / "none"), "--out", str(tmp_path / "run"), "--set", setting])
    assert "no prepared dataset" not in err and all(w in err for w in words), err


def test_set_values_are_converted_to_the_field_types():
    got = _overrides(["max_steps=3", "lr=1", "grad_clip=null", "val_images=1e3", "freeze_text=true",
                      "optimizer=adamw", "seed=\"7\""], TrainConfig)
    assert got == {"max_steps": 3, "lr": 1.0, "grad_clip": None, "val_images": 1000, "freeze_text": True,
                   "optimizer": "adamw", "seed": 7}
    assert type(got["lr"]) is float and type(got["val_images"]) is int
    model = _overrides(["levels=[[4,4]]", "name=123", "image_weights=null", "level_weights=[1]"], HATConfig)
    assert model == {"levels": ((4, 4),), "name": "123", "image_weights": None, "level_weights": (1.0,)}
    assert HATConfig.preset("tiny").replace(**model).levels == ((4, 4),)


@pytest.mark.parametrize("levels", [(2, 2), "2,2", [2, 2], ((2, 2, 2),), ((2.0, 2),), ((2, 2), (3, 3), (2, 2))])
def test_levels_must_be_distinct_pairs_of_ints(levels):
    with pytest.raises(ValueError, match="levels"):
        HATConfig.preset("tiny", levels=levels)


# --------------------------------------------------------------------- 3, 4: values the configs refuse
@pytest.mark.parametrize("field, value", [
    ("checkpoint_every", 0), ("grad_accum", 0), ("max_steps", 0), ("max_steps", -1), ("max_steps", 2.5),
    ("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("lr", math.inf),
    ("temperature", 0.0), ("temperature", math.nan), ("temperature", math.inf), ("val_images", 0),
    ("global_temperature", math.nan), ("time_budget_s", math.inf), ("weight_decay", math.nan),
    ("lr_step_epochs", 0), ("freeze_text", 1),
])
def test_train_config_refuses_values_that_would_misbehave(field, value):
    with pytest.raises(ValueError, match=f"invalid TrainConfig: .*{field}"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("lambda_softmax", math.nan), ("lambda_softmax", math.inf),
                                          ("margin", math.nan), ("margin", math.inf), ("margin", -math.inf)])
def test_model_config_refuses_non_finite_values(field, value):
    with pytest.raises(ValueError, match=f"invalid HATConfig: {field}"):
        HATConfig.preset("tiny", **{field: value})
    assert json.loads("NaN") != json.loads("NaN")  # what --set lambda_softmax=NaN parses to


# --------------------------------------------------------------------- 5: the data, checked before any step
def test_good_data_passes_the_training_checks(splits):
    check_for_training(splits, TrainConfig(batch_size=16, val_images=2))


@pytest.mark.parametrize("change, message", [
    (lambda s: {"train": s["train"], "test": s["test"]}, r"no 'val' split \(it has: train, test\)"),
    (lambda s: {"val": s["val"]}, "no 'train' split"),
    (lambda s: {**s, "val": s["val"].select([])}, "'val' split is empty"),
    (lambda s: {**s, "train": s["train"].select([])}, "'train' split is empty"),
    (lambda s: {**s, "val": _with_captions(s["val"], 2, ["a red circle"] * 4)},
     r"'val' split has 1 image\(s\) with fewer than 5 captions \(row\(s\) 2\)"),
    (lambda s: {**s, "train": _with_captions(s["train"], 3, ["a red circle", "  ", "x", "y", "z"])},
     r"'train' split has 1 image\(s\) with an empty or blank caption.*row\(s\) 3\)"),
    (lambda s: {**s, "train": _with_captions(s["train"], 5, [])}, r"'train' split .*or with none \(row\(s\) 5\)"),
    (lambda s: {**s, "val": _with_captions(s["val"], 0, ["", "a", "b", "c", "d"])}, r"'val' split .*blank"),
])
def test_bad_splits_are_refused_naming_split_and_rows(splits, change, message):
    with pytest.raises(ValueError, match=message):
        check_for_training(datasets.DatasetDict(change(splits)), TrainConfig(batch_size=16))


def test_only_the_validated_images_need_five_captions(splits):
    short_last = {**splits, "val": _with_captions(splits["val"], 3, ["a red circle"])}
    check_for_training(datasets.DatasetDict(short_last), TrainConfig(batch_size=16, val_images=3))
    with pytest.raises(ValueError, match="fewer than 5 captions"):
        check_for_training(datasets.DatasetDict(short_last), TrainConfig(batch_size=16))


def test_too_few_pairs_for_one_batch_is_refused_up_front(splits):
    with pytest.raises(ValueError, match=r"fewer pairs \(40\) than one batch of 58"):
        check_for_training(splits, TrainConfig())


def test_train_cli_refuses_bad_data_before_building_a_model(splits, tmp_path, capsys, monkeypatch):
    import hat_min.training.loop as train

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(train, "HAT", no_model)
    bad = tmp_path / "blank"
    datasets.DatasetDict({**splits, "train": _with_captions(splits["train"], 1, ["ok", "", "", "", ""])}).save_to_disk(
        str(bad))
    err = _one_line_error(capsys, ["train", "--preset", "tiny", "--train-preset", "demo", "--data", str(bad),
                                   "--out", str(tmp_path / "run"), "--set", "batch_size=8"])
    assert "'train' split" in err and "row(s) 1)" in err


# --------------------------------------------------------------------- 6: evaluate's split and protocol
@pytest.mark.parametrize("extra, words", [
    (["--split", "test"], ["no 'test' split", "it has: train, val", "--split"]),
])
def test_evaluate_names_the_available_splits(splits, tmp_path, capsys, extra, words):
    path = tmp_path / "no_test"
    datasets.DatasetDict({"train": splits["train"], "val": splits["val"]}).save_to_disk(str(path))
    err = _one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "no_model"), "--data", str(path), *extra])
    assert all(w in err for w in words), err


@pytest.mark.parametrize("extra, words", [
    (["--protocol", "coco1k"], ["fold_images=1000", "6 images", "--fold-images N"]),
    (["--protocol", "coco1k", "--fold-images", "4"], ["fold_images=4", "--fold-images N"]),
    (["--protocol", "coco5k"], ["coco5k", "5,000 images", "has 6", "--protocol 1k"]),
    (["--fold-images", "3"], ["--fold-images", "coco1k"]),
])
def test_evaluate_protocol_mismatches_are_one_line_before_loading_a_model(data, tmp_path, capsys, extra, words):
    err = _one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "no_model"), "--data", str(data),
                                   *extra])
    assert all(w in err for w in words), err


def test_evaluate_fold_images_reaches_the_protocol(data, tmp_path, capsys):
    HAT(HATConfig.preset("tiny")).save_pretrained(tmp_path / "model")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(data), "--protocol", "coco1k",
                 "--fold-images", "3", "--device", "cpu", "--batch-size", "8"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["baselines"]["chance"]["i2t_r1"] == pytest.approx(100 / 3, abs=0.01)  # folds of 3 images, not 6
