"""The trainer: resume after a crash, non-finite loss, freeze schedule, curriculum, schedules, checkpoints."""
import hashlib
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from data_prep.synthetic import generate
from hat_min import HAT, HATConfig
from hat_min.training.checkpoint import find_checkpoint
from hat_min.training.runlog import read_generalisation, read_metrics
from hat_min.training.loop import NonFiniteLossError, TrainConfig, _optimizer, _scheduler, train, train_or_load

# A very small HAT so that each test trains in seconds.
MODEL = HATConfig.preset("tiny", text_dropout=0.0, swin_embed_dim=16, swin_depths=(1, 1, 1, 1), swin_heads=(1, 1, 2, 2),
                         text_width=32, text_heads=2, text_layers=2, levels=((2, 1), (3, 2), (4, 2)), embed_dim=32)
FAST = TrainConfig(epochs=2, batch_size=16, lr=1e-3, optimizer="adamw", schedule="constant", warmup_steps=2,
                   negatives="curriculum", switch_accuracy=0.2, checkpoint_every=3, workers=0)


UNTIL = 0.01  # a running in-batch accuracy the small model passes within a few steps (its accuracy: 3-9 %)


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic"
    generate(n_train=8, n_val=4, n_test=4, seed=1, progress=False).save_to_disk(str(path))  # 40 pairs: 2 steps/epoch
    return path


def _crash_at(step):
    def on_step(state, model):
        if state.step == step:
            raise Crash

    return on_step


def _weights(directory):
    return load_file(str(directory / "model.safetensors"))


@pytest.mark.parametrize("by_family", ["never", "after_switch"])
def test_resume_after_a_crash_reaches_the_same_result(data, tmp_path, by_family):
    cfg = FAST.replace(epochs=3, checkpoint_every=1, batch_by_family=by_family, switch_accuracy=0.05)
    _, whole = train(MODEL, cfg, data, tmp_path / "whole", progress=False)
    with pytest.raises(Crash):  # killed in the middle of epoch 3 (after step 5's checkpoint)
        train(MODEL, cfg, data, tmp_path / "killed", progress=False, on_step=_crash_at(5))
    _, resumed = train(MODEL, cfg, data, tmp_path / "killed", resume=True, progress=False)
    assert resumed["steps"] == whole["steps"] == 6
    assert resumed["best_rsum"] == pytest.approx(whole["best_rsum"])
    for key, value in _weights(tmp_path / "whole" / "last").items():
        torch.testing.assert_close(_weights(tmp_path / "killed" / "last")[key], value, msg=key)
    steps_whole, vals_whole = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    steps_resumed, vals_resumed = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [r["step"] for r in steps_resumed] == list(range(1, 7))  # no duplicated records
    assert [r["loss"] for r in steps_resumed] == pytest.approx([r["loss"] for r in steps_whole])
    assert vals_resumed == vals_whole


def test_base_frames_until_accuracy_trains_on_the_base_frames_first_and_resumes_alike(tmp_path, monkeypatch):
    from data_prep.captions import in_more_frame
    from hat_min.training import data as training_data

    seen = []  # (caption, whether its image has a caption in the base frames), in the order training reads them
    getitem = training_data.TrainPairs.__getitem__

    def record(self, key):
        item = getitem(self, key)
        row = self.pairs[key[0] if isinstance(key, tuple) else key][0]
        seen.append((item[1], any(not in_more_frame(c) for c in self.captions[row])))
        return item

    monkeypatch.setattr(training_data.TrainPairs, "__getitem__", record)
    data = tmp_path / "more"  # 40 pairs, half of the captions in the more frames
    generate(n_train=8, n_val=4, n_test=4, seed=1, progress=False, more_frames=0.5).save_to_disk(str(data))
    cfg = FAST.replace(epochs=3, checkpoint_every=1, base_frames_until_accuracy=UNTIL)
    _, whole = train(MODEL, cfg, data, tmp_path / "whole", progress=False)
    steps = read_metrics(tmp_path / "whole" / "metrics.jsonl")[0]
    ema, crossed = 0.0, None  # the running accuracy, recomputed from the log
    for record in steps:
        ema = 0.9 * ema + 0.1 * record["accuracy"]
        if crossed is None and ema >= UNTIL:
            crossed = record["step"]
    assert whole["all_captions_from_step"] == crossed and 1 <= crossed < 6  # the switch happens inside the run
    first, later = seen[:crossed * 16], seen[crossed * 16:]
    assert len(seen) == 6 * 16
    assert not any(in_more_frame(c) and has_base for c, has_base in first)  # until then: base frames only
    assert any(in_more_frame(c) for c, _ in later)  # then every caption
    with pytest.raises(Crash):
        train(MODEL, cfg, data, tmp_path / "killed", progress=False, on_step=_crash_at(crossed))  # at the switch
    _, resumed = train(MODEL, cfg, data, tmp_path / "killed", resume=True, progress=False)
    assert resumed["best_rsum"] == pytest.approx(whole["best_rsum"])
    assert resumed["all_captions_from_step"] == crossed
    for key, value in _weights(tmp_path / "whole" / "last").items():
        torch.testing.assert_close(_weights(tmp_path / "killed" / "last")[key], value, msg=key)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="base_frames_until_accuracy"):
            TrainConfig(base_frames_until_accuracy=bad)


def test_val_every_validates_during_the_epoch_and_resumes_alike(data, tmp_path):
    cfg = FAST.replace(epochs=3, checkpoint_every=1, val_every=2)  # 2 steps an epoch: 6 steps, validation at 2, 4, 6
    _, whole = train(MODEL, cfg.replace(epochs=1, val_every=None), data, tmp_path / "plain", progress=False)
    assert [v["step"] for v in read_metrics(tmp_path / "plain" / "metrics.jsonl")[1]] == [2]  # epoch end only
    cfg = FAST.replace(epochs=1, max_steps=2, val_every=1)  # one validation mid-epoch, one at the end
    train(MODEL, cfg, data, tmp_path / "curve", progress=False)
    assert [v["step"] for v in read_metrics(tmp_path / "curve" / "metrics.jsonl")[1]] == [1, 2]
    cfg = FAST.replace(epochs=3, max_steps=5, val_every=3, checkpoint_every=1)
    _, whole = train(MODEL, cfg, data, tmp_path / "whole", progress=False)
    with pytest.raises(Crash):
        train(MODEL, cfg, data, tmp_path / "killed", progress=False, on_step=_crash_at(4))
    _, resumed = train(MODEL, cfg, data, tmp_path / "killed", resume=True, progress=False)
    vals = read_metrics(tmp_path / "whole" / "metrics.jsonl")[1]
    assert [v["step"] for v in vals] == [2, 3, 4, 5]  # epoch ends 2, 4; val_every 3; the run's end 5
    assert read_metrics(tmp_path / "killed" / "metrics.jsonl")[1] == vals
    assert resumed["best_rsum"] == pytest.approx(whole["best_rsum"])


def test_generalisation_splits_are_logged_at_every_validation_and_never_chosen_on(data, tmp_path):
    import datasets

    cfg = FAST.replace(epochs=1, max_steps=2, val_every=1)  # validations at steps 1 and 2
    train(MODEL, cfg, data, tmp_path / "run", progress=False)
    records = read_generalisation(tmp_path / "run" / "metrics.jsonl")
    assert [(r["split"], r["step"]) for r in records] == [
        (name, step) for step in (1, 2) for name in ("test_unseen", "test_frames", "test_words")]
    assert all({"rsum", "family_i2t", "family_t2i_role", "winoground_group"} <= set(r) for r in records)
    steps, vals = read_metrics(tmp_path / "run" / "metrics.jsonl")  # neither list holds them
    assert [v["step"] for v in vals] == [1, 2] and [r["step"] for r in steps] == [1, 2]
    # the same run on the dataset without those splits: the same validations and the same best/ (never chosen on)
    three = datasets.load_from_disk(str(data))
    datasets.DatasetDict({k: three[k] for k in ("train", "val", "test")}).save_to_disk(str(tmp_path / "three"))
    train(MODEL, cfg, tmp_path / "three", tmp_path / "plain", progress=False)
    assert read_generalisation(tmp_path / "plain" / "metrics.jsonl") == []
    assert read_metrics(tmp_path / "plain" / "metrics.jsonl")[1] == vals
    # log_generalisation=False (the notebook recipe): the splits are there, the log leaves them out
    train(MODEL, cfg.replace(log_generalisation=False), data, tmp_path / "unlogged", progress=False)
    assert read_generalisation(tmp_path / "unlogged" / "metrics.jsonl") == []
    assert read_metrics(tmp_path / "unlogged" / "metrics.jsonl")[1] == vals
    for key, value in _weights(tmp_path / "run" / "best").items():
        torch.testing.assert_close(_weights(tmp_path / "plain" / "best")[key], value, msg=key)


def _listing(folder):
    """Every file under ``folder``: (size, modification time in ns, sha256)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                          hashlib.sha256(p.read_bytes()).hexdigest()) for p in files}


def test_loading_a_cached_run_changes_nothing_in_its_folder(data, tmp_path):
    cfg = FAST.replace(epochs=1)
    _, trained = train_or_load(MODEL, cfg, data, tmp_path, progress=False)
    run = tmp_path / trained["out_dir"].rsplit("/", 1)[-1]
    for path in run.rglob("*"):  # back-date every file: any rewrite would set a new modification time
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = _listing(run)

    def no_step(state, model):
        raise AssertionError("a complete cached run must not train")

    model, loaded = train_or_load(MODEL, cfg, data, tmp_path, progress=False, on_step=no_step)
    assert _listing(run) == before and "metrics.jsonl" in before
    assert [p.name for p in tmp_path.iterdir()] == [run.name]
    assert loaded["steps"] == trained["steps"] and loaded["best_rsum"] == trained["best_rsum"]
    assert torch.equal(model.image_proj[0].weight, _weights(run / "best")["image_proj.0.weight"])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    def poison(state, model):
        if state.step == 3:  # right after the checkpoint of step 3: break the weights
            with torch.no_grad():
                model.image_proj[0].weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="step 4.*last good checkpoint"):
        train(MODEL, FAST.replace(epochs=3), data, tmp_path / "run", progress=False, on_step=poison)
    last = find_checkpoint(tmp_path / "run" / "last")
    assert all(torch.isfinite(t).all() for t in _weights(last).values())
    assert torch.load(last / "training_state.pt", weights_only=True)["state"]["step"] == 3


def test_checkpoint_loads_with_safetensors_and_json_alone(data, tmp_path):
    train(MODEL, FAST.replace(epochs=1), data, tmp_path, progress=False)
    config = json.loads((tmp_path / "best" / "config.json").read_text())  # plain JSON
    weights = load_file(str(tmp_path / "best" / "model.safetensors"))  # no pickle
    model = HAT(HATConfig.from_dict(config))
    model.load_state_dict(weights)
    torch.testing.assert_close(model.text_proj[0].weight, weights["text_proj.0.weight"])
    loaded = HAT.from_pretrained(tmp_path / "best")
    torch.testing.assert_close(loaded.image_proj[2].bias, weights["image_proj.2.bias"])


def test_loading_with_another_config_names_the_fields(data, tmp_path):
    HAT(MODEL).save_pretrained(tmp_path / "m")
    other = MODEL.replace(embed_dim=128, direction="t2i")
    with pytest.raises(ValueError, match=r"different config: .*embed_dim \(checkpoint 32, expected 128\).*direction"):
        HAT.from_pretrained(tmp_path / "m", config=other)


def test_resume_refuses_a_different_recipe(data, tmp_path):
    cfg = FAST.replace(epochs=1)
    train(MODEL, cfg, data, tmp_path, progress=False)
    changed = cfg.replace(lr=0.5, epochs=2)
    with pytest.raises(ValueError, match=r"training config differs in lr \(checkpoint 0.001, now 0.5\)"):
        train(MODEL, changed, data, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="embed_dim"):
        train(MODEL.replace(embed_dim=64), cfg.replace(epochs=2), data, tmp_path,
              resume=True, progress=False)


def test_a_crash_while_saving_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    cfg = FAST.replace(epochs=1)
    train(MODEL, cfg, data, tmp_path, progress=False)
    before = _weights(tmp_path / "last")
    import safetensors.torch

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError, match="No space"):
        train(MODEL, cfg.replace(epochs=2), data, tmp_path, resume=True, progress=False)
    after = _weights(tmp_path / "last")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".last.")]  # no leftovers


def test_frozen_backbones_do_not_move(data, tmp_path):
    cfg = FAST.replace(epochs=1, freeze_backbone_epochs=1)
    torch.manual_seed(cfg.seed)
    initial = HAT(MODEL).state_dict()
    model, _ = train(MODEL, cfg, data, tmp_path, progress=False)
    trained = HAT.from_pretrained(tmp_path / "last").state_dict()
    assert torch.equal(trained["image_encoder.body.patch_embed.proj.weight"],
                       initial["image_encoder.body.patch_embed.proj.weight"])
    assert torch.equal(trained["text_encoder.bert.embeddings.word_embeddings.weight"],
                       initial["text_encoder.bert.embeddings.word_embeddings.weight"])
    assert not torch.equal(trained["image_proj.0.weight"], initial["image_proj.0.weight"])


def test_a_frozen_text_encoder_stays_put_while_the_image_encoder_learns(data, tmp_path):
    cfg = FAST.replace(epochs=1, freeze_text=True)
    model = HATConfig.preset("minilm", text_dropout=0.0, swin_embed_dim=16, swin_depths=(1, 1, 1, 1), image_weights=None,
                             swin_heads=(1, 1, 2, 2), levels=((2, 1), (3, 2), (4, 2)), embed_dim=32)
    torch.manual_seed(cfg.seed)
    initial = HAT(model).state_dict()
    train(model, cfg, data, tmp_path, progress=False)
    trained = HAT.from_pretrained(tmp_path / "last").state_dict()
    text = [k for k in initial if k.startswith("text_encoder.")]
    assert text and all(torch.equal(trained[k], initial[k]) for k in text)
    assert not torch.equal(trained["image_encoder.body.patch_embed.proj.weight"],
                           initial["image_encoder.body.patch_embed.proj.weight"])
    assert not torch.equal(trained["text_proj.0.weight"], initial["text_proj.0.weight"])


def test_text_train_layers_trains_only_the_top_layers_of_a_frozen_text_encoder():
    from hat_min.training.loop import _set_backbones_trainable

    model = HAT(HATConfig.preset("minilm", levels=((1, 2), (2, 4), (3, 6))))
    _set_backbones_trainable(model, True, freeze_text=True, text_train_layers=2)
    layers = model.text_encoder.bert.encoder.layer
    assert all(p.requires_grad for layer in layers[4:] for p in layer.parameters())
    assert not any(p.requires_grad for layer in layers[:4] for p in layer.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.bert.embeddings.parameters())
    assert all(p.requires_grad for p in model.image_encoder.parameters())
    _set_backbones_trainable(model, False, freeze_text=True, text_train_layers=2)  # the freeze phase wins
    assert not any(p.requires_grad for p in [*model.image_encoder.parameters(), *model.text_encoder.parameters()])
    with pytest.raises(ValueError, match="text_train_layers"):
        TrainConfig(text_train_layers=-1)


def test_freeze_text_leaves_a_random_text_encoder_trainable(data, tmp_path):
    torch.manual_seed(FAST.seed)
    initial = HAT(MODEL).state_dict()
    train(MODEL, FAST.replace(epochs=1, freeze_text=True), data, tmp_path, progress=False)
    trained = HAT.from_pretrained(tmp_path / "last").state_dict()
    key = "text_encoder.bert.embeddings.word_embeddings.weight"
    assert not torch.equal(trained[key], initial[key])


def test_curriculum_switches_to_the_hardest_negative(data, tmp_path):
    cfg = FAST.replace(epochs=1, switch_accuracy=0.0)
    _, summary = train(MODEL, cfg, data, tmp_path, progress=False)
    assert summary["hardest_from_step"] == 1
    cfg = FAST.replace(epochs=1, switch_accuracy=1.01)
    _, summary = train(MODEL, cfg, data, tmp_path / "never", progress=False)
    assert summary["hardest_from_step"] is None


def test_learning_rate_schedules():
    param = torch.nn.Parameter(torch.zeros(1))

    def rates(cfg, steps):
        opt = torch.optim.SGD([param], lr=cfg.lr)
        sched = _scheduler(opt, cfg, steps_per_epoch=10)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    paper = rates(TrainConfig(lr=1e-4), 25)
    assert paper[0] == pytest.approx(1e-4) and paper[9] == pytest.approx(1e-4)
    assert paper[10] == pytest.approx(1e-4) and paper[24] == pytest.approx(1e-4)  # 10 epochs = 100 steps
    assert rates(TrainConfig(lr=1e-4, lr_step_epochs=1), 25)[10] == pytest.approx(1e-5)
    warm = rates(TrainConfig(lr=1.0, warmup_steps=4, schedule="constant"), 8)
    assert warm == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0])
    cosine = rates(TrainConfig(lr=1.0, epochs=1, schedule="cosine"), 10)
    assert cosine[0] == pytest.approx(1.0) and cosine[5] == pytest.approx(0.5) and cosine[-1] < 0.05
    cooled = rates(TrainConfig(lr=1.0, epochs=1, schedule="constant", warmup_steps=2, cooldown_steps=4), 10)
    assert cooled == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25])
    short = rates(TrainConfig(lr=1.0, epochs=3, max_steps=5, schedule="constant", cooldown_steps=2), 5)
    assert short == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.5])  # the run's last steps, max_steps included


def test_fused_optimizer_makes_the_same_update():
    cfg = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1)
    torch.manual_seed(0)
    a = torch.nn.Linear(8, 4)
    b = torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    fast, plain = _optimizer(a, cfg), torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        x = torch.randn(16, 8)
        for model, opt in ((a, fast), (b, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_grad_accumulation_runs(data, tmp_path):
    cfg = FAST.replace(epochs=1, grad_accum=2)
    _, summary = train(MODEL, cfg, data, tmp_path, progress=False)
    assert summary["steps"] == 2


def test_two_processes_match_one_on_the_same_global_batch(data, tmp_path):
    """torchrun with 2 CPU processes (gloo): the hardest negatives come from the whole global batch,
    so the loss of every step equals a single process's on the same global batch."""
    import subprocess
    import sys

    common = ["-m", "hat_min", "train", "--preset", "tiny", "--data", str(data), "--train-preset", "demo",
              "--set", "text_dropout=0.0", "--set", "swin_depths=[1,1,1,1]", "--set", "batch_size=16",
              "--set", "max_steps=2", "--set", "warmup_steps=1", "--set", "negatives=hardest",
              "--set", "workers=0", "--set", "val_images=4", "--device", "cpu"]
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], capture_output=True,
                         text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", *common, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    losses_one = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")[0]]
    losses_two = [r["loss"] for r in read_metrics(tmp_path / "two" / "metrics.jsonl")[0]]
    assert len(losses_one) == len(losses_two) == 2
    assert losses_two == pytest.approx(losses_one, rel=1e-4)


def test_killed_cli_run_resumes_to_the_same_weights(data, tmp_path):
    """SIGKILL a `python -m hat_min train` mid-epoch, whatever it is doing, then `--resume`."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sets = ["text_dropout=0.0", "swin_embed_dim=16", "swin_depths=[1,1,1,1]", "swin_heads=[1,1,2,2]",
            "text_width=32", "text_heads=2", "text_layers=2", "levels=[[2,1],[3,2],[4,2]]", "embed_dim=32",
            "epochs=4", "max_steps=8", "batch_size=16", "checkpoint_every=1", "workers=0", "val_images=4"]
    args = [sys.executable, "-m", "hat_min", "train", "--data", str(data), "--device", "cpu"]
    args += [f"--set={s}" for s in sets]
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(args + ["--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    log = tmp_path / "killed" / "metrics.jsonl"
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"loss"') < 5):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of epoch 3 (2 steps per epoch), mid-write or not
    proc.wait()
    resumed = subprocess.run(args + ["--out", str(tmp_path / "killed"), "--resume"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["steps"] == 8
    expected, got = _weights(tmp_path / "whole" / "last"), _weights(tmp_path / "killed" / "last")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert read_metrics(tmp_path / "killed" / "metrics.jsonl")[1] == read_metrics(tmp_path / "whole" / "metrics.jsonl")[1]


def test_curriculum_can_end_on_another_loss(data, tmp_path):
    cfg = FAST.replace(epochs=1, switch_accuracy=0.0, start_loss="all", end_loss="infonce")
    train(MODEL, cfg, data, tmp_path, progress=False)
    steps, _ = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["objective"] for r in steps] == ["all", "infonce"]  # switched after step 1


def test_global_loss_adds_a_weighted_contrastive_term(data, tmp_path):
    first_loss = {}
    for weight in (0.0, 1.0, 2.0):
        cfg = FAST.replace(epochs=1, global_loss_weight=weight)
        train(MODEL, cfg, data, tmp_path / str(weight), progress=False)
        first_loss[weight] = read_metrics(tmp_path / str(weight) / "metrics.jsonl")[0][0]["loss"]  # before any update
    aux = first_loss[1.0] - first_loss[0.0]
    assert aux > 1.0  # InfoNCE over 16 pairs in both directions: about 2 * 16 * log(16) at initialisation
    assert first_loss[2.0] - first_loss[1.0] == pytest.approx(aux, rel=1e-4)


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_training_runs_on_the_eager_equations_and_matches_the_fast_run(data, tmp_path, direction):
    """``scan_implementation="eager"`` trains the same model as the default: the score is one function."""
    recipe = FAST.replace(epochs=1, negatives="hardest")
    runs = {}
    for name in ("eager", "auto"):
        model, summary = train(MODEL.replace(direction=direction, scan_implementation=name), recipe, data,
                               tmp_path / name, progress=False)
        runs[name] = summary, model.state_dict(), read_metrics(tmp_path / name / "metrics.jsonl")[0]
    assert runs["eager"][0]["steps"] == runs["auto"][0]["steps"] == 2
    for (eager, fast) in zip(runs["eager"][2], runs["auto"][2]):
        assert eager["loss"] == pytest.approx(fast["loss"], rel=1e-4)
    # Same weights, same batch: the same loss and the same gradient of every parameter. (The weights after
    # the Adam steps are not compared: Adam divides each update by the root of its squared gradient, so a
    # gradient element at rounding level can move its weight by up to the learning rate either way.)
    torch.manual_seed(0)
    start = HAT(MODEL.replace(direction=direction)).state_dict()
    images = torch.randn(6, 3, MODEL.image_size, MODEL.image_size)
    ids = torch.randint(1000, 2000, (6, 9))
    mask = torch.ones_like(ids)
    mask[:3, 6:] = 0  # captions of different lengths
    grads, losses = {}, {}
    for name in ("eager", "auto"):
        model = HAT(MODEL.replace(direction=direction, scan_implementation=name))
        model.load_state_dict(start)
        _, losses[name] = model(images, ids, mask, negatives="hardest")
        losses[name].backward()
        grads[name] = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    torch.testing.assert_close(losses["eager"], losses["auto"], atol=0, rtol=1e-5)
    assert grads["eager"].keys() == grads["auto"].keys() and len(grads["eager"]) > 20
    for key, grad in grads["eager"].items():  # per parameter, relative to its gradient's norm (measured: <= 3.2e-6);
        # 1e-8 absolute: the key biases' gradients are zero in exact arithmetic (softmax ignores them), ~1e-11 here
        gap, size = float((grad - grads["auto"][key]).norm()), float(grads["auto"][key].norm())
        assert gap <= 1e-4 * size + 1e-8, (key, gap, size)
