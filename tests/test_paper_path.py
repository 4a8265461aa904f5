"""The paper's path on a CPU, offline: its architecture (random weights) through the real trainer and evaluation,
and the release's freeze schedule seen parameter by parameter.

The paper architecture (Swin-B at 224 px, a BERT-base-sized text encoder, levels (2,4) (3,10) (4,12), width 768;
198 M parameters) is trained and built once for the whole module: one ``train`` call of two steps at batch 4,
then a validation (about 25 s on 2 cores). The freeze schedule is checked on smaller models (seconds).
"""
import math
import shutil
import socket

import pytest
import torch

from data_prep.synthetic import generate
from hat_min import HAT, HATConfig
import data_prep.hub
from hat_min import encoders
from hat_min.evaluation.protocols import evaluate
from hat_min.training.runlog import read_metrics
from hat_min.training.loop import TrainConfig, train

# The paper's model with random weights: what benchmarks/gpu.py builds (bert-base dimensions, bert's vocabulary).
PAPER = HATConfig.preset("paper", image_pretrained=False, text_model="scratch", text_layers=12, text_width=768,
                         text_heads=12)
PAPER_STEPS, PAPER_BATCH = 2, 4
# A very small HAT (tests/test_train.py's) for the 12-epoch run of the paper recipe.
MICRO = HATConfig.preset("tiny", text_dropout=0.0, swin_embed_dim=16, swin_depths=(1, 1, 1, 1), swin_heads=(1, 1, 2, 2),
                         text_width=32, text_heads=2, text_layers=2, levels=((2, 1), (3, 2), (4, 2)), embed_dim=32)
RECALLS = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 / 4 / 4 generated images (64 px; the paper config's transforms bring them to 224), 5 captions each."""
    path = tmp_path_factory.mktemp("data") / "synthetic"
    generate(n_train=4, n_val=4, n_test=4, seed=1, progress=False).save_to_disk(str(path))  # 20 training pairs
    return path


_connect = socket.socket.connect


def _no_network(sock, address):
    """socket.connect for local sockets only (DataLoader workers use Unix sockets): no internet."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        raise AssertionError(f"the random-weight paper architecture must build offline; it connected to {address}")
    return _connect(sock, address)


def _hub_unreachable(*args, **kwargs):
    raise AssertionError("the paper architecture with random weights must not ask for the hub")


@pytest.fixture(scope="module")
def paper_run(data, tmp_path_factory):
    """One ``train`` call of the paper recipe on the paper architecture: 2 steps at batch 4, then validation.

    Records, per step, which parameters require gradients and (step 2) which changed, and the shapes of the
    images the model encoded (training and evaluation).
    """
    out = tmp_path_factory.mktemp("paper_run")
    cfg = TrainConfig.preset("paper", batch_size=PAPER_BATCH, max_steps=PAPER_STEPS, val_images=4, workers=0)
    steps, shapes, live = [], [], {}
    encode_image = HAT.encode_image

    def spy(self, images):
        shapes.append((self.training, tuple(images.shape)))
        return encode_image(self, images)

    def on_step(state, model):
        live["model"] = model
        record = {"step": state.step, "trainable": {n for n, p in model.named_parameters() if p.requires_grad}}
        if "before" in live:
            record["changed"] = {n for n, p in model.named_parameters() if not torch.equal(p, live["before"][n])}
        live["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        steps.append(record)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(data_prep.hub, "offline_reason", _hub_unreachable)
        mp.setattr(HAT, "encode_image", spy)
        model, summary = train(PAPER, cfg, data, out, progress=False, on_step=on_step)
    del live["before"]
    yield {"model": model.eval(), "summary": summary, "cfg": cfg, "out": out, "steps": steps, "shapes": shapes,
           "live": live["model"]}
    shutil.rmtree(out, ignore_errors=True)  # about 1.5 GB of checkpoints: not kept past this module


def _groups(model: HAT) -> dict[str, set[str]]:
    """Parameter names: the two backbones, Swin's own LayerNorms, the per-level norms and the projections."""
    names = [n for n, _ in model.named_parameters()]
    groups = {
        "swin": {n for n in names if n.startswith("image_encoder.")},
        "bert": {n for n in names if n.startswith("text_encoder.")},
        "level_norms": {n for n in names if n.startswith("image_norms.")},
        "projections": {n for n in names if n.startswith(("image_proj.", "text_proj."))},
    }
    groups["swin_norms"] = {n for n in groups["swin"] if ".norm" in n}  # patch embedding, blocks, patch merging
    groups["backbones"] = groups["swin"] | groups["bert"]
    return groups


@pytest.mark.slow
def test_paper_architecture_builds_offline_with_the_papers_dimensions(paper_run):
    model = paper_run["model"]  # built by train() (and again by HAT.from_pretrained) with the network blocked
    assert PAPER.offline and encoders.hub_downloads(PAPER) == []
    assert model.config == PAPER
    assert 190e6 < sum(p.numel() for p in model.parameters()) < 205e6  # Swin-B 87 M + BERT-base-sized 110 M
    assert model.image_encoder.channels == {2: 256, 3: 512, 4: 1024}
    assert model.image_encoder.regions(224) == {2: 784, 3: 196, 4: 49}
    bert = model.text_encoder.bert.config
    assert (bert.num_hidden_layers, bert.hidden_size, bert.num_attention_heads) == (12, 768, 12)
    assert model.text_encoder.layers == [4, 10, 12]
    assert all(p.out_features == 768 for p in (*model.image_proj, *model.text_proj))
    with torch.no_grad():
        images = model.encode_image(torch.randn(1, 3, 224, 224))
        words = model.encode_text(torch.tensor([[101, 1037, 3899, 102]]), torch.ones(1, 4, dtype=torch.long))
    assert [tuple(f.shape) for f in images] == [(1, 784, 768), (1, 196, 768), (1, 49, 768)]
    assert [tuple(f.shape) for f in words] == [(1, 4, 768)] * 3


@pytest.mark.slow
def test_train_runs_steps_of_the_paper_recipe_at_224_px_then_validates(paper_run):
    cfg, steps, groups = paper_run["cfg"], paper_run["steps"], _groups(paper_run["live"])
    assert paper_run["summary"]["steps"] == PAPER_STEPS
    records, validations = read_metrics(paper_run["out"] / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, PAPER_STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in records)
    assert [v["step"] for v in validations] == [PAPER_STEPS]  # the run's end validates
    assert all(math.isfinite(validations[0][k]) for k in (*RECALLS, "rsum"))
    assert (paper_run["out"] / "best").is_dir() and (paper_run["out"] / "last").is_dir()
    # the loader brought the 64-px images to the paper's 224 px (random crops for training, resize + crop for eval)
    trained = [shape for training, shape in paper_run["shapes"] if training]
    assert trained == [(PAPER_BATCH, 3, 224, 224)] * PAPER_STEPS
    assert {shape[1:] for training, shape in paper_run["shapes"] if not training} == {(3, 224, 224)}
    # the recipe's first epoch: backbones trainable or frozen as the preset says, and step 2 moved exactly those
    frozen = cfg.freeze_backbone_epochs > 0
    learning = groups["projections"] | (set() if frozen else groups["backbones"])
    if not (frozen and PAPER.swin_final_norm):  # the release's level norms are frozen with the backbones
        learning |= groups["level_norms"]
    assert all(s["trainable"] == learning for s in steps)
    assert steps[1]["changed"] == learning
    # best/ (the one validation) holds exactly the weights of the run after its last step
    live = paper_run["live"].state_dict()
    for name, value in paper_run["model"].state_dict().items():
        assert torch.equal(value, live[name]), name


@pytest.mark.slow
def test_evaluate_gives_finite_recalls_for_the_paper_architecture(paper_run, data):
    from hat_min.evaluation.data import load_splits

    test = load_splits(data)["test"]
    result = evaluate(paper_run["model"], test, progress=False, workers=0, return_sims=True)
    assert result["sims"].shape == (4, 20) and torch.isfinite(result["sims"]).all()
    for key in RECALLS:
        assert 0.0 <= result[key] <= 100.0, key
    assert math.isfinite(result["rsum"])
    assert result["i2t_r10"] == result["t2i_r10"] == 100.0  # 4 images, 20 captions: top 10 always hits


@pytest.mark.parametrize("swin_final_norm", [False, True])
def test_freeze_schedule_freezes_the_backbones_for_one_epoch_then_trains_them(data, tmp_path, swin_final_norm):
    """freeze_backbone_epochs=1, two epochs of 2 steps: per step, what requires grad and what changed."""
    model_cfg = HATConfig.preset("tiny", swin_final_norm=swin_final_norm)
    cfg = TrainConfig.preset("paper", epochs=2, freeze_backbone_epochs=1, batch_size=8, val_images=4, workers=0)
    torch.manual_seed(cfg.seed)  # train() seeds the same way before building its model: the same initial weights
    before = {n: p.detach().clone() for n, p in HAT(model_cfg).named_parameters()}
    steps = []

    def on_step(state, model):
        now = {n: p.detach().clone() for n, p in model.named_parameters()}
        steps.append({"epoch": (state.step - 1) // 2 + 1,
                      "trainable": {n for n, p in model.named_parameters() if p.requires_grad},
                      "changed": {n for n in now if not torch.equal(now[n], before[n])}})
        before.update(now)

    model, summary = train(model_cfg, cfg, data, tmp_path, progress=False, on_step=on_step)
    groups = _groups(model)
    assert summary["steps"] == 4 and [s["epoch"] for s in steps] == [1, 1, 2, 2]
    assert len(groups["swin_norms"]) >= 20 and all(".norm" in n for n in groups["swin_norms"])
    norms = groups["level_norms"]
    for s in steps[:2]:  # epoch 1: only the projections (and, unless the release's norms, the level norms) learn
        assert not s["trainable"] & groups["backbones"] and not s["changed"] & groups["backbones"]
        assert groups["projections"] <= s["trainable"] and groups["projections"] <= s["changed"]
        assert (norms <= s["changed"]) if not swin_final_norm else not s["changed"] & norms
    for s in steps[2:]:  # epoch 2: every parameter trains and changes, Swin's LayerNorms included
        assert s["trainable"] == s["changed"] == set().union(*groups.values())


def test_paper_recipe_freezes_the_backbones_for_11_epochs(data, tmp_path):
    """The release unfreezes when epoch index 10 ends: 11 epochs with frozen backbones, then everything trains."""
    assert TrainConfig.preset("paper").freeze_backbone_epochs == 11
    cfg = TrainConfig.preset("paper", epochs=12, batch_size=20, val_images=4, workers=0)  # one step an epoch
    trainable = []
    train(MICRO, cfg, data, tmp_path, progress=False, on_step=lambda state, model: trainable.append(
        (all(p.requires_grad for p in model.image_encoder.parameters()),
         all(p.requires_grad for p in model.text_encoder.parameters()))))
    assert trainable == [(False, False)] * 11 + [(True, True)]
