"""The paper presets against the authors' release: docs/method.md section 8 ("Deviations from the release"),
the release's norms and initialisation, model selection, the recipe a model preset brings, and the profiles."""
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hat_min import encoders
from hat_min import model as model_module
from hat_min.tutorial import profiles
from hat_min.training import loop as train_module
from hat_min.training.checkpoint import TrainState
from hat_min.config import HATConfig
from hat_min.model import HAT
from hat_min.training.recipe import DEFAULT_TRAIN_PRESET, TRAIN_PRESETS, TrainConfig

METHOD = Path(__file__).resolve().parents[1] / "docs" / "method.md"
TINY = HATConfig.preset("tiny")


def _deviation_rows() -> list[list[str]]:
    text = METHOD.read_text()
    section = text[text.index("## 8. Deviations from the release"):text.index("## 9.")]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def test_every_field_the_deviations_table_names_exists_and_holds_the_claimed_value():
    model, recipe = HATConfig.preset("paper"), TrainConfig.preset("paper")
    fields = {f.name for f in dataclasses.fields(HATConfig)} | {f.name for f in dataclasses.fields(TrainConfig)}
    claims = 0
    for row in _deviation_rows():
        assert len(row) == 4, row
        for name, value in re.findall(r"`(\w+)=([^`]+)`", row[2]):
            assert name in fields, f"the table names {name}, which is no config field"
            actual = getattr(model, name) if hasattr(model, name) else getattr(recipe, name)
            assert repr(actual) == value or str(actual) == value.strip('"'), (name, actual, value)
            claims += 1
    assert claims >= 8


def test_the_paper_recipe_freezes_the_backbones_for_11_epochs_as_released():
    paper = TrainConfig.preset("paper")
    assert paper.freeze_backbone_epochs == 11 and paper.lr == 1e-4 and paper.lr_step_epochs == 10
    assert paper.grad_clip is None and paper.select_by == "r1_sum" and paper.batch_size == 58
    # the backbones first train in epoch index 11, at 1e-4 x 0.1 = 1e-5 (x0.1 every 10 epochs)
    assert paper.lr * paper.lr_gamma ** (paper.freeze_backbone_epochs // paper.lr_step_epochs) == pytest.approx(1e-5)


def test_the_paper_preset_brings_its_own_recipe_on_the_command_line():
    from hat_min.__main__ import _configs, _parser

    args = _parser().parse_args(["train", "--preset", "paper", "--data", "d"])
    assert _configs(args)[1] == TrainConfig.preset("paper")
    args = _parser().parse_args(["train", "--preset", "minilm", "--data", "d"])
    assert _configs(args)[1] == TrainConfig.preset("demo")
    args = _parser().parse_args(["train", "--preset", "paper", "--train-preset", "colab", "--data", "d"])
    assert _configs(args)[1] == TrainConfig.preset("colab")
    assert set(DEFAULT_TRAIN_PRESET.values()) <= set(TRAIN_PRESETS)


def test_projections_start_as_in_the_release():
    torch.manual_seed(0)
    model = HAT(TINY.replace(proj_init_std=0.02))
    for proj in (*model.image_proj, *model.text_proj):
        assert proj.weight.std().item() == pytest.approx(0.02, rel=0.15)
        assert proj.weight.mean().abs().item() < 0.005 and not proj.bias.any()
    default = HAT(TINY)  # PyTorch's default: uniform(+-1/sqrt(fan_in)), biases not zero
    assert default.text_proj[0].bias.any() and default.text_proj[0].weight.std().item() > 0.04


def test_the_deepest_level_starts_from_swins_final_norm(monkeypatch):
    cfg = TINY.replace(swin_final_norm=True)  # tiny's levels end at stage 4 of 4
    width = HAT(TINY).image_norms[-1].weight.shape[0]
    real = encoders.swin_final_norm(cfg)  # a full timm Swin's final LayerNorm (random weights here)
    assert set(real) == {"weight", "bias"} and real["weight"].shape == (width,)
    marked = {"weight": torch.linspace(0.5, 1.5, width), "bias": torch.linspace(-1, 1, width)}
    monkeypatch.setattr(model_module, "swin_final_norm", lambda config: marked)
    model = HAT(cfg)
    torch.testing.assert_close(model.image_norms[-1].weight.data, marked["weight"])
    torch.testing.assert_close(model.image_norms[-1].bias.data, marked["bias"])
    assert torch.equal(model.image_norms[0].weight.data, torch.ones_like(model.image_norms[0].weight))  # stage 2: new
    shallow = HAT(cfg.replace(levels=((2, 2), (3, 3))))  # no level at stage 4: nothing to take over
    assert torch.equal(shallow.image_norms[-1].bias.data, torch.zeros_like(shallow.image_norms[-1].bias))


@pytest.mark.parametrize("release_norms", [False, True])
def test_the_level_norms_freeze_with_the_backbones_only_with_the_releases_norms(release_norms, monkeypatch):
    monkeypatch.setattr(model_module, "swin_final_norm", lambda config: HAT(TINY).image_norms[-1].state_dict())
    model = HAT(TINY.replace(swin_final_norm=release_norms))
    train_module._set_backbones_trainable(model, trainable=False)
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert all(p.requires_grad for p in [*model.image_proj.parameters(), *model.text_proj.parameters()])
    assert all(p.requires_grad != release_norms for p in model.image_norms.parameters())
    train_module._set_backbones_trainable(model, trainable=True)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("select_by, kept_step", [("rsum", 1), ("r1_sum", 2)])
def test_best_is_chosen_by_the_recipes_selection(tmp_path, monkeypatch, select_by, kept_step):
    """Validation 1 has the higher rSum, validation 2 the higher R@1 sum: each rule keeps its own."""
    scripted = iter([{"i2t_r1": 10.0, "t2i_r1": 10.0, "rsum": 300.0}, {"i2t_r1": 30.0, "t2i_r1": 20.0, "rsum": 200.0}])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: next(scripted))
    saved = []
    model = SimpleNamespace(save_pretrained=lambda path: saved.append(state.step))
    state = TrainState()
    run = SimpleNamespace(rank=0, cfg=TrainConfig(select_by=select_by), state=state, model=model, dev="cpu",
                          out_dir=tmp_path, log=SimpleNamespace(write=lambda record: None), report={},
                              claim=lambda: None)
    for step in (1, 2):
        state.step = step
        train_module._validate(run, [], progress=False)
    assert saved[-1] == kept_step
    assert state.best_rsum == (300.0 if select_by == "rsum" else 50.0)


def test_profiles_follow_the_machine():
    assert profiles.choose({}, cuda=False, hub=True).name == "offline"
    assert profiles.choose({}, cuda=True, hub=False).name == "offline-gpu"
    assert profiles.choose({"HAT_MIN_OFFLINE": "1"}, cuda=True, hub=True).name == "offline-gpu"
    paper = profiles.choose({}, cuda=True, hub=True)
    assert paper.name == "paper" and not paper.offline and paper.train_config().time_budget_s == 3 * 3600
    assert paper.model_config() == HATConfig.preset("paper") and paper.train_preset == "colab"
    assert profiles.choose({"HAT_MIN_PROFILE": "offline"}, cuda=True, hub=True).name == "offline"
    with pytest.raises(ValueError, match="HAT_MIN_PROFILE='gpu' is not a profile"):
        profiles.choose({"HAT_MIN_PROFILE": "gpu"})
    offline = profiles.PROFILES["offline"]  # what the committed notebooks ran: unchanged by this module
    assert (offline.model_preset, offline.train_preset, offline.data) == ("minilm", "notebook", "data/synthetic")
    gpu = profiles.PROFILES["offline-gpu"].train_config()
    assert gpu.batch_size > TrainConfig.preset("demo").batch_size and gpu.max_steps > TrainConfig.preset("demo").max_steps


def test_the_offline_profile_builds_its_data_on_every_core_and_says_when_it_is_not_the_default(tmp_path, monkeypatch,
                                                                                              capsys):
    import json

    from data_prep import synthetic

    built = []
    monkeypatch.setattr(synthetic, "build", lambda out, **kw: built.append(kw) or Path(out))
    offline = profiles.PROFILES["offline"]
    assert offline.ensure_data(tmp_path) == tmp_path / "data/synthetic" and built == [{"workers": None}]
    folder = tmp_path / "data/synthetic"
    folder.mkdir(parents=True)
    (folder / "dataset_dict.json").write_text("{}")
    (folder / "synthetic.json").write_text(json.dumps({**synthetic.DEFAULTS, "n_unseen": 1000, "more_frames": 0.0}))
    assert offline.ensure_data(tmp_path) == folder and len(built) == 1  # kept, not rebuilt
    assert "is not the default one: more_frames 0.0 (default 0.3)" in capsys.readouterr().out


def test_the_colab_recipe_has_the_releases_two_phases():
    colab, paper = TrainConfig.preset("colab"), TrainConfig.preset("paper")
    per_epoch = 29_000 * 5 // colab.batch_size  # Flickr30K's training split: 2,500 steps of 58 pairs
    assert colab.total_steps(per_epoch) == 3750 and colab.freeze_backbone_epochs * per_epoch == 2500  # then 1,250
    assert colab.lr == 1e-4 and colab.lr * colab.lr_gamma == pytest.approx(1e-5)  # unfrozen at 1e-5, as released
    assert paper.total_steps(per_epoch) == 30 * 2500 and paper.freeze_backbone_epochs * per_epoch == 11 * 2500
