"""HATConfig: presets, validation, JSON round trip."""
import dataclasses
import json

import pytest

from hat_min.config import PRESETS, HATConfig


def test_presets_exist_and_paper_matches_the_method():
    assert {"tiny", "minilm", "paper"} <= set(PRESETS)
    paper = HATConfig.preset("paper")
    assert paper.levels == ((2, 4), (3, 10), (4, 12))
    assert (paper.embed_dim, paper.lambda_softmax, paper.margin, paper.direction) == (768, 9.0, 0.2, "i2t")
    assert paper.image_model == "swin_base_patch4_window7_224.ms_in22k" and paper.image_size == 224
    assert paper.text_model == "bert-base-uncased" and paper.max_text_len == 32 and paper.max_violation
    assert not paper.offline and HATConfig.preset("tiny").offline and HATConfig.preset("minilm").offline


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    cfg = HATConfig.preset(name)
    again = HATConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)


def test_overrides_and_level_subsets():
    cfg = HATConfig.preset("tiny", levels=((4, 4),), direction="t2i")
    assert cfg.levels == ((4, 4),) and cfg.weights == (1.0,)
    two = dataclasses.replace(cfg, levels=((3, 3), (4, 4)), level_weights=(0.5, 1.0))
    assert two.weights == (0.5, 1.0)
    assert cfg.replace(lambda_softmax=4.0).lambda_softmax == 4.0
    assert HATConfig.preset("tiny").diff(cfg) == {"levels": ([[2, 2], [3, 3], [4, 4]], [[4, 4]]),
                                                  "direction": ("i2t", "t2i")}


@pytest.mark.parametrize("overrides, message", [
    (dict(levels=()), "at least one"),
    (dict(levels=((5, 1),)), "stage 5"),
    (dict(swin_depths=(2, 2, 2), swin_heads=(3, 6, 12), levels=((4, 4),)), r"stage 4 is not in 1\.\.3"),
    (dict(levels=((2, 9),)), "bert layer 9"),
    (dict(level_weights=(1.0,)), "level_weights"),
    (dict(direction="both"), "direction"),
    (dict(lambda_softmax=0.0), "lambda_softmax"),
    (dict(max_text_len=2), "max_text_len"),
])
def test_invalid_configs_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        HATConfig.preset("tiny", **overrides)


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="tiny"):
        HATConfig.preset("huge")
    with pytest.raises(ValueError, match="colour"):
        HATConfig.from_dict({**HATConfig().to_dict(), "colour": "red"})
