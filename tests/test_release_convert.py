"""convert-release: the authors' Lightning checkpoints (LuminosityX/HAT) into hat_min folders, offline.

A randomly initialised model of the paper's architecture (small widths; the release's names: 4 Swin stages,
12 BERT layers, levels (2, 4), (3, 10), (4, 12)) is written in the release's exact key layout
(``release_state_dict``) as a Lightning-style file; converting it must give back a model that scores exactly
as the original. Broken files each get one sentence.
"""
import json
import re
import subprocess
import sys
import types

import pytest
import torch

from hat_min import HAT, HATConfig
from hat_min.config import SCRATCH
from hat_min.weights.release import (TRUST_FLAG, ReleaseError, convert_release, hat_state_dict, load_release,
                                     release_state_dict)

ENV = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
# The paper's architecture with small widths: every name of the release, none of its size, nothing downloaded.
SMALL = dict(image_pretrained=False, text_model=SCRATCH, text_layers=12, text_width=32, text_heads=2,
             swin_embed_dim=16, swin_depths=(2, 2, 2, 2), swin_heads=(1, 2, 4, 8), embed_dim=32)
HPARAMS = {"config": {"direction": "i2t", "lambda_softmax": 9, "max_text_len": 32, "margin": 0.2,
                      "image_size": 224, "hidden_size": 32, "vit": "swin_base_patch4_window7_224_in22k",
                      "tokenizer": "bert-base-uncased"}}


@pytest.fixture(scope="module")
def config() -> HATConfig:
    return HATConfig.preset("paper").replace(**SMALL)


@pytest.fixture(scope="module")
def model(config) -> HAT:
    """A random paper-architecture model in which every tensor differs (LayerNorms and biases included)."""
    torch.manual_seed(0)
    model = HAT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def lightning_file(path, state: dict, **extra):
    """A file as PyTorch Lightning writes it: the model's tensors under ``state_dict``, and more."""
    torch.save({"state_dict": state, "hyper_parameters": HPARAMS, "epoch": 3, "global_step": 1200, **extra}, path)
    return path


@pytest.fixture(scope="module")
def release_file(model, tmp_path_factory):
    return lightning_file(tmp_path_factory.mktemp("release") / "hat_f30k.ckpt", release_state_dict(model))


def inputs():
    """Two random images and three captions of different lengths: (2, 3, 224, 224), (3, 10), (3, 10)."""
    torch.manual_seed(1)
    ids = torch.randint(1000, 2000, (3, 10))
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 3:] = 0, 0
    return torch.randn(2, 3, 224, 224), ids, mask


def similarities(model: HAT) -> torch.Tensor:
    images, ids, mask = inputs()
    with torch.no_grad():
        return model.score(model.encode_image(images), model.encode_text(ids, mask), mask)  # (2, 3)


def one_sentence(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ----------------------------------------------------------------------------- the release's layout
def test_the_release_layout_has_the_original_swin_names(model):
    state = release_state_dict(model)
    # original Swin: patch merging at the END of stages 1-3 (timm: at the start of stages 2-4)
    assert tuple(state["vit_model.layers.0.downsample.reduction.weight"].shape) == (32, 64)  # Linear(4C, 2C), C=16
    assert not any(k.startswith("vit_model.layers.3.downsample") for k in state)
    # its buffers: an index per block, a mask per shifted block where the stage is wider than a window
    assert sum(k.endswith("relative_position_index") for k in state) == 8
    assert sorted(k for k in state if k.endswith("attn_mask")) == [
        f"vit_model.layers.{i}.blocks.1.attn_mask" for i in range(3)]
    assert {k.rsplit(".", 1)[0] for k in state if re.match(r"vit_model\.norm", k)} == {
        "vit_model.norm", "vit_model.norm_0", "vit_model.norm_1", "vit_model.norm_2"}
    assert "text_transformer.pooler.dense.weight" in state  # BERT's pooler, which hat_min does not keep
    assert "text_transformer.encoder.layer.11.output.LayerNorm.bias" in state
    widths = {s: tuple(state[f"cross_modal_image_transform{s}.weight"].shape) for s in ("_1", "_2", "")}
    assert widths == {"_1": (32, 32), "_2": (32, 64), "": (32, 128)}  # stages 2, 3, 4: 2C, 4C, 8C


@pytest.mark.slow
def test_the_paper_sized_layout_has_the_shapes_of_the_release_code():
    """Swin-B (random, no download) with a small BERT: the image side's names and shapes as the release builds them."""
    paper = HATConfig.preset("paper").replace(image_pretrained=False, text_model=SCRATCH, text_layers=12,
                                              text_width=768, text_heads=12, swin_final_norm=False)
    state = release_state_dict(HAT(paper))
    expected = {"vit_model.patch_embed.proj.weight": (128, 3, 4, 4),
                "vit_model.layers.2.blocks.17.attn.relative_position_bias_table": (169, 16),
                "vit_model.layers.2.downsample.reduction.weight": (1024, 2048),
                "vit_model.norm_0.weight": (128,), "vit_model.norm_1.weight": (256,),
                "vit_model.norm_2.weight": (512,), "vit_model.norm.weight": (1024,),
                "cross_modal_image_transform_1.weight": (768, 256), "cross_modal_image_transform_2.weight": (768, 512),
                "cross_modal_image_transform.weight": (768, 1024), "cross_modal_text_transform_1.weight": (768, 768)}
    assert {k: tuple(state[k].shape) for k in expected} == expected
    assert sum(k.endswith("attn_mask") for k in state) == 1 + 1 + 9  # shifted blocks of stages 1-3 (stage 4: 7x7)


# ----------------------------------------------------------------------------- converting
def test_the_mapping_gives_back_every_tensor(model):
    tensors, dropped = hat_state_dict(release_state_dict(model), model)
    own = model.state_dict()
    assert tensors.keys() == own.keys() and all(torch.equal(tensors[k], own[k]) for k in own)
    assert len(dropped) == 8 + 3 + 2 + 2  # position indices, masks, norm_0 (stage 1), BERT's pooler


def test_the_converted_model_scores_like_the_original(model, config, release_file, tmp_path):
    out = convert_release(release_file, tmp_path / "converted", config=config)
    converted = HAT.from_pretrained(out)
    assert converted.config == config  # the file's settings are the preset's
    expected = similarities(model)
    assert expected.std() > 1e-3  # the captions score differently: a swapped tensor would show
    torch.testing.assert_close(similarities(converted.eval()), expected, atol=1e-5, rtol=0)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_the_files_settings_go_into_the_saved_config(model, config, tmp_path):
    hparams = {"config": {**HPARAMS["config"], "direction": "t2i", "lambda_softmax": 4, "max_text_len": 24}}
    path = lightning_file(tmp_path / "t2i.ckpt", release_state_dict(model), hyper_parameters=hparams)
    saved = HAT.from_pretrained(convert_release(path, tmp_path / "out", config=config)).config
    assert saved == config.replace(direction="t2i", lambda_softmax=4.0, max_text_len=24)


# ----------------------------------------------------------------------------- files that do not fit
def test_one_missing_tensor_is_one_error_with_both_lists(model, config, tmp_path):
    state = release_state_dict(model)
    del state["vit_model.layers.1.blocks.0.mlp.fc1.weight"]
    with pytest.raises(ReleaseError) as err:
        convert_release(lightning_file(tmp_path / "m.ckpt", state), tmp_path / "out", config=config)
    message = one_sentence(err)
    assert ("missing (model tensors the file does not fill) (1): "
            "image_encoder.body.layers_1.blocks.0.mlp.fc1.weight") in message
    assert "unexpected (file tensors neither used nor in DROPPED) (0): none" in message
    assert not (tmp_path / "out").exists()


def test_one_extra_tensor_is_named(model, config, tmp_path):
    state = {**release_state_dict(model), "cross_modal_text_transform_3.weight": torch.zeros(32, 32)}
    with pytest.raises(ReleaseError) as err:
        convert_release(lightning_file(tmp_path / "x.ckpt", state), tmp_path / "out", config=config)
    message = one_sentence(err)
    assert "missing (model tensors the file does not fill) (0): none" in message
    assert "(1): cross_modal_text_transform_3.weight" in message


def test_a_tensor_of_another_shape_is_named(model, config, tmp_path):
    state = release_state_dict(model)
    state["cross_modal_image_transform_2.weight"] = torch.zeros(32, 65)
    with pytest.raises(ReleaseError) as err:
        convert_release(lightning_file(tmp_path / "s.ckpt", state), tmp_path / "out", config=config)
    assert "cross_modal_image_transform_2.weight (32, 65) -> image_proj.1.weight (32, 64)" in one_sentence(err)


def test_old_bert_layernorm_names_are_read_as_transformers_reads_them(model, config, tmp_path):
    state = {re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", k))
             if k.startswith("text_transformer.") else k: v for k, v in release_state_dict(model).items()}
    assert "text_transformer.embeddings.LayerNorm.gamma" in state
    out = convert_release(lightning_file(tmp_path / "old.ckpt", state), tmp_path / "out", config=config)
    torch.testing.assert_close(similarities(HAT.from_pretrained(out).eval()), similarities(model), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- pickled objects
def pickled_objects_file(path, state: dict):
    """A file with the kind of objects a Lightning 1.3 + sacred run pickles: a config container and a callback
    class used as a key, from a package that is not installed when the file is read."""
    module = types.ModuleType("lightning_not_installed")
    ReadOnlyDict = type("ReadOnlyDict", (dict,), {"__module__": module.__name__})
    ReadOnlyList = type("ReadOnlyList", (list,), {"__module__": module.__name__})
    ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": module.__name__})
    module.ReadOnlyDict, module.ReadOnlyList, module.ModelCheckpoint = ReadOnlyDict, ReadOnlyList, ModelCheckpoint
    config = ReadOnlyDict({**HPARAMS["config"], "datasets": ReadOnlyList(["f30k"])})
    sys.modules[module.__name__] = module
    try:
        torch.save({"state_dict": state, "hyper_parameters": {"config": config},
                    "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(512.3)}}, "epoch": 3}, path)
    finally:
        del sys.modules[module.__name__]
    return path


def test_pickled_objects_are_refused_without_trust_and_read_with_it(model, config, tmp_path):
    path = pickled_objects_file(tmp_path / "objects.ckpt", release_state_dict(model))
    with pytest.raises(ReleaseError) as err:
        convert_release(path, tmp_path / "out", config=config)
    message = one_sentence(err)
    assert TRUST_FLAG in message and "lightning_not_installed.ReadOnlyDict" in message
    assert not (tmp_path / "out").exists()
    out = convert_release(path, tmp_path / "out", trust_pickle=True, config=config)
    torch.testing.assert_close(similarities(HAT.from_pretrained(out).eval()), similarities(model), atol=1e-5, rtol=0)
    file = load_release(path, trust_pickle=True)  # the stand-ins keep what was pickled
    assert file["hyper_parameters"]["config"]["lambda_softmax"] == 9
    assert file["hyper_parameters"]["config"]["datasets"].items_ == ["f30k"]
    assert [type(k).__name__ for k in file["callbacks"]] == ["type"]


@pytest.mark.parametrize("content, words", [
    ({"model": {"vit_model.norm.weight": torch.ones(2)}}, "has no 'state_dict'"),
    ({"state_dict": {"image_encoder.body.patch_embed.proj.bias": torch.ones(2)}},  # hat_min's own names
     "is not a checkpoint of the HAT release"),
    (torch.ones(3), "not a PyTorch Lightning checkpoint"),
    (b"these bytes are no checkpoint", "is not a readable PyTorch checkpoint"),
])
def test_unknown_layouts_are_one_sentence(config, tmp_path, content, words):
    path = tmp_path / "unknown.ckpt"
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(ReleaseError) as err:
        convert_release(path, tmp_path / "out", config=config)
    assert words in one_sentence(err)


# ----------------------------------------------------------------------------- command line
def run(*args):
    return subprocess.run([sys.executable, "-m", "hat_min", *args], capture_output=True, text=True, timeout=300,
                          env=ENV)


def test_the_command_line_end_to_end(model, config, tmp_path):
    path = pickled_objects_file(tmp_path / "hat_f30k.ckpt", release_state_dict(model))
    (tmp_path / "small.json").write_text(json.dumps(config.to_dict()))
    command = ["convert-release", str(path), "--out", str(tmp_path / "out"), "--config", str(tmp_path / "small.json")]
    refused = run(*command)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and TRUST_FLAG in refused.stderr
    done = run(*command, TRUST_FLAG)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["tensors"] == len(model.state_dict())
    torch.testing.assert_close(similarities(HAT.from_pretrained(tmp_path / "out").eval()), similarities(model),
                               atol=1e-5, rtol=0)


def test_the_paper_preset_offline_is_one_line(release_file, tmp_path):
    out = run("convert-release", str(release_file), "--out", str(tmp_path / "out"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "bert-base-uncased from the Hugging Face Hub" in out.stderr
    assert "--config" in out.stderr and "tiny" not in out.stderr  # what to do when converting, not another preset
    assert "convert-release" in run("--help").stdout
