"""TrainConfig: validation, presets, copies."""
import dataclasses
import json

import pytest

from hat_min.training import loop
from hat_min.training.recipe import TRAIN_PRESETS, TrainConfig


@pytest.mark.parametrize("bad, message", [
    (dict(optimizer="sgd"), "optimizer"), (dict(schedule="linear"), "schedule"),
    (dict(negatives="some"), "negatives"), (dict(batch_size=10, grad_accum=3), "grad_accum"),
    (dict(batch_by_family="sometimes"), "batch_by_family"), (dict(end_loss="softmax"), "end_loss"),
    (dict(cooldown_steps=-1), "cooldown_steps"),
    (dict(val_every=0), "val_every"),
])
def test_invalid_train_configs(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def test_presets_and_copies():
    assert set(TRAIN_PRESETS) == {"paper", "colab", "demo", "notebook", "gpu"}
    # the released recipe: the defaults plus the release's freeze schedule, no clipping, best/ by the R@1 sum
    assert TrainConfig.preset("paper") == TrainConfig(freeze_backbone_epochs=11, grad_clip=None, select_by="r1_sum")
    paper = TrainConfig.preset("paper")
    assert (paper.lr, paper.batch_size, paper.optimizer, paper.schedule, paper.negatives) == (1e-4, 58, "adam", "step",
                                                                                             "hardest")
    notebook = TrainConfig.preset("notebook")
    # the demo's run, with a validation curve, without the generalisation splits in its log
    assert notebook == TrainConfig.preset("demo").replace(val_every=100, log_generalisation=False)
    assert TrainConfig.preset("demo").batch_by_family == "always"  # whole families of hard negatives per batch
    assert TrainConfig.preset("demo").base_frames_until_accuracy == 0.6  # the caption curriculum (2026-12-04)
    assert TrainConfig.preset("demo", lr=1e-3).lr == 1e-3
    with pytest.raises(ValueError, match="unknown training preset 'fast'"):
        TrainConfig.preset("fast")
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig.preset("demo").replace(optimizer="sgd")  # a copy is validated again
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.lr = 1.0
    assert TrainConfig(**json.loads(json.dumps(notebook.to_dict()))) == notebook
    assert loop.TrainConfig is TrainConfig  # the loop reads the recipe it runs
