"""hat_min.fieldtypes: config values against their annotated types, for every field of both configs."""
import dataclasses
import json
import math
import re
import typing

import numpy as np
import pytest

from hat_min import fieldtypes
from hat_min.config import PRESETS, HATConfig
from hat_min.recipe import TRAIN_PRESETS, TrainConfig

INT_OR_NONE = int | None
PAIRS = tuple[tuple[int, int], ...]


@pytest.mark.parametrize("value, hint, expected", [
    (3, int, True), (np.int64(3), int, True), (True, int, False), (3.0, int, False), ("3", int, False),
    (0.5, float, True), (2, float, True), (np.float32(0.5), float, True), (False, float, False),
    (math.nan, float, False), (-math.inf, float, False), (np.float32("nan"), float, False), ("0.5", float, False),
    (True, bool, True), (1, bool, False), ("true", bool, False),
    ("adam", str, True), (3, str, False),
    (None, INT_OR_NONE, True), (4, INT_OR_NONE, True), (4.5, INT_OR_NONE, False), (None, int, False),
    ((), tuple[int, ...], True), ((1, 2, 3), tuple[int, ...], True), ([1, 2], tuple[int, ...], False),
    ((1, "2"), tuple[int, ...], False),
    ((0.5, 1), tuple[float, float], True), ((0.5,), tuple[float, float], False), ((0.5, 1, 1), tuple[float, float], False),
    (((2, 2), (4, 4)), PAIRS, True), ((2, 2), PAIRS, False), (((2, 2, 2),), PAIRS, False), (((2.0, 2),), PAIRS, False),
    ("anything", typing.Any, True),
])
def test_matches(value, hint, expected):
    assert fieldtypes.matches(value, hint) is expected


def test_describe_and_example_name_the_type():
    assert fieldtypes.describe(PAIRS) == "[[int, int], ...]"
    assert fieldtypes.example(PAIRS) == "[[3, 3]]"
    assert fieldtypes.describe(INT_OR_NONE) == "int or null" and fieldtypes.example(INT_OR_NONE) == "3"
    assert fieldtypes.describe(bool) == "true/false"
    assert json.loads(fieldtypes.example(tuple[float, float, float])) == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("presets", [PRESETS, TRAIN_PRESETS], ids=["HATConfig", "TrainConfig"])
def test_every_preset_passes_and_survives_json(presets):
    for name, config in presets.items():
        assert fieldtypes.problems(config) == [], name
        again = type(config)(**json.loads(json.dumps(config.to_dict())))  # lists come back as tuples
        assert again == config and fieldtypes.problems(again) == [], name


def _wrong_value(hint):
    """A value of another kind than ``hint``: a string for numbers, bools and tuples, a number for strings."""
    return 3 if fieldtypes.matches("text", hint) else "text"


def _cases(cls, preset):
    return [pytest.param(cls, preset, f.name, id=f"{cls.__name__}.{f.name}") for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls, preset, field", _cases(HATConfig, "tiny") + _cases(TrainConfig, "demo"))
def test_every_field_refuses_a_value_of_another_kind_by_name(cls, preset, field):
    hint = typing.get_type_hints(cls)[field]
    expected = re.escape(f"invalid {cls.__name__}: {field} must be {fieldtypes.describe(hint)}")
    with pytest.raises(ValueError, match=expected):
        cls.preset(preset, **{field: _wrong_value(hint)})  # name too: preset's own argument is positional-only


@pytest.mark.parametrize("overrides", [{"embed_dim": "512"}, {"image_size": 64.5}, {"margin": None},
                                       {"swin_depths": (2, "2", 2, 2)}, {"image_mean": (0.5, 0.5)}])
def test_a_wrong_type_is_refused_before_a_model_is_built(overrides):
    # each of these used to pass the config and fail inside timm/torch with a TypeError naming no field
    with pytest.raises(ValueError, match=f"invalid HATConfig: {next(iter(overrides))} must be"):
        HATConfig.preset("tiny", **overrides)


def test_ints_stay_accepted_where_floats_are_expected():
    assert HATConfig.preset("tiny", lambda_softmax=9, level_weights=[1, 2, 1]).level_weights == (1, 2, 1)
    assert TrainConfig(lr=1).lr == 1
