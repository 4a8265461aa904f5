"""Run folders that fail safely: a checkpoint cannot run code, a corrupt file is named, no run is overwritten
or resumed on other data by accident, Ctrl-C says how to resume, no stale temporary folders, JSON summaries."""
import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

import hat_min.training.loop as train_module
from data_prep.synthetic import generate
from hat_min import HAT, HATConfig
from hat_min.__main__ import main
from hat_min.training.checkpoint import (STATE_NAME, TEMP_MARKER, TrainState, find_checkpoint, load_training_state,
                                        save_training_state)
from hat_min.training.runlog import read_metrics
from hat_min.training.loop import NonFiniteLossError, TrainConfig, _optimizer, _scheduler, train, train_or_load

# The tiny preset made smaller still, and a fast recipe (as in test_train.py): 2 steps an epoch.
MODEL = HATConfig.preset("tiny", text_dropout=0.0, swin_embed_dim=16, swin_depths=(1, 1, 1, 1), swin_heads=(1, 1, 2, 2),
                         text_width=32, text_heads=2, text_layers=2, levels=((2, 1), (3, 2), (4, 2)), embed_dim=32)
FAST = TrainConfig(epochs=1, batch_size=16, lr=1e-3, optimizer="adamw", schedule="constant", warmup_steps=2,
                   negatives="curriculum", switch_accuracy=0.2, checkpoint_every=3, workers=0)
# The same model on the command line (the demo recipe, 2 steps an epoch on this data).
SETS = ["text_dropout=0.0", "swin_embed_dim=16", "swin_depths=[1,1,1,1]", "swin_heads=[1,1,2,2]", "text_width=32",
        "text_heads=2", "text_layers=2", "levels=[[2,1],[3,2],[4,2]]", "embed_dim=32", "batch_size=16", "workers=0",
        "val_images=4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic"
    generate(n_train=8, n_val=4, n_test=4, seed=1, progress=False).save_to_disk(str(path))  # 40 pairs: 2 steps/epoch
    return path


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A complete run of one epoch (2 steps): metrics.jsonl, best/, last/."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(MODEL, FAST, data, out, progress=False)
    return out


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run that a test may change."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _listing(folder):
    """Every file under ``folder``: (size, modification time in ns, sha256)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(data, out, *extra):
    return ["train", "--train-preset", "demo", "--data", str(data), "--out", str(out), "--device", "cpu",
            *[f"--set={s}" for s in SETS], *extra]


class _Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint could do with any code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_training_state_round_trips_as_plain_tensors(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = HAT(MODEL)
    optimizer, scaler = _optimizer(model, FAST), torch.amp.GradScaler("cpu", enabled=True, init_scale=512.0)
    scheduler = _scheduler(optimizer, FAST, steps_per_epoch=2)
    scaler.scale(model.image_proj[0].weight.sum()).backward()
    scaler.step(optimizer)
    scaler.update(128.0)  # a scale of its own, to see it come back
    scheduler.step()
    state = TrainState(step=1, best_rsum=12.5, hardest=True, hardest_from_step=1, accuracy_ema=0.3,
                       history=[{"step": 1, "rsum": 12.5}])
    rng = torch.get_rng_state()
    save_training_state(tmp_path / "last", model, optimizer, scheduler, scaler, state, FAST, {"sizes": {"val": 4}})
    real_load = torch.load

    def plain_only(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", plain_only)
    torch.manual_seed(1)
    fresh = HAT(MODEL)
    opt2, scaler2 = _optimizer(fresh, FAST), torch.amp.GradScaler("cpu", enabled=True)
    sched2 = _scheduler(opt2, FAST, steps_per_epoch=2)
    loaded = load_training_state(tmp_path / "last", fresh, opt2, sched2, scaler2, MODEL, FAST, {"sizes": {"val": 4}})
    assert loaded == state and torch.equal(torch.get_rng_state(), rng)
    assert sched2.state_dict() == scheduler.state_dict() and scaler2.state_dict() == scaler.state_dict()
    assert scaler2.get_scale() == 128.0
    saved_opt, got_opt = optimizer.state_dict(), opt2.state_dict()
    assert saved_opt["param_groups"] == got_opt["param_groups"]
    for key, slots in saved_opt["state"].items():
        assert all(torch.equal(v, got_opt["state"][key][k]) for k, v in slots.items())


def test_a_pickled_object_in_the_training_state_is_refused_and_never_run(data, run, tmp_path):
    marker, path = tmp_path / "MARKER", run / "last" / STATE_NAME
    blob = torch.load(path, weights_only=True)
    blob["state"]["history"] = _Payload(marker)
    torch.save(blob, path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a plain tensor file.*refusing to unpickle"):
        train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
    assert not marker.exists()


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("name, damage", [("model.safetensors", _truncate), ("training_state.pt", _truncate),
                                          ("config.json", lambda p: p.write_text('{"name": "tiny", ')),
                                          ("train_config.json", lambda p: p.write_text("epochs: 2"))])
def test_a_truncated_or_corrupt_checkpoint_file_is_named(data, run, name, damage):
    damage(run / "last" / name)
    before = _listing(run)
    with pytest.raises(ValueError, match=rf"{re.escape(str(run / 'last' / name))} is (truncated|not valid JSON)"):
        train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
    assert _listing(run) == before


def test_a_corrupt_model_is_one_line_on_the_command_line(data, run, capsys):
    _truncate(run / "best" / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors is truncated or corrupt"):
        HAT.from_pretrained(run / "best")
    assert main(["evaluate", "--checkpoint", str(run / "best"), "--data", str(data), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(run / "best" / "model.safetensors") in err and "Traceback" not in err


def test_resume_without_a_checkpoint_refuses_and_changes_nothing(data, run):
    shutil.rmtree(run / "last")
    before = _listing(run)
    with pytest.raises(ValueError, match=rf"cannot resume: {re.escape(str(run / 'last'))} holds no checkpoint"):
        train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
    assert _listing(run) == before and "metrics.jsonl" in before and "best/model.safetensors" in before


def test_train_or_load_starts_afresh_where_a_killed_run_left_no_checkpoint(data, tmp_path):
    _, first = train_or_load(MODEL, FAST, data, tmp_path / "cache", progress=False)  # a missing folder: fine
    folder = Path(first["out_dir"])
    shutil.rmtree(folder / "last")  # killed before its first checkpoint: a log and best/ only
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in range(1, 6)))
    steps = []
    _, again = train_or_load(MODEL, FAST, data, tmp_path / "cache", progress=False,
                             on_step=lambda state, model: steps.append(state.step))
    assert steps == [1, 2] and again["steps"] == 2 and find_checkpoint(folder / "last") is not None
    assert [r["step"] for r in read_metrics(folder / "metrics.jsonl")[0]] == [1, 2]


def test_a_new_run_refuses_a_used_folder_unless_told_to_overwrite(data, run, monkeypatch, capsys):
    before = _listing(run)
    with pytest.raises(ValueError, match=rf"{re.escape(str(run))} already holds a run.*--resume.*--overwrite"):
        train(MODEL, FAST, data, run, progress=False)
    assert main(_cli(data, run)) == 2 and "--overwrite" in capsys.readouterr().err
    assert _listing(run) == before
    monkeypatch.setattr(train_module, "_validate", lambda *args, **kwargs: None)  # this run writes no best/
    _, summary = train(MODEL, FAST, data, run, progress=False, overwrite=True)
    assert not (run / "best").exists()  # the old run's best/ did not survive
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")[0]] == [1, 2] and summary["steps"] == 2


def test_resume_refuses_other_data_but_not_the_same_data_moved(data, run, tmp_path):
    other = tmp_path / "other"
    generate(n_train=8, n_val=4, n_test=4, seed=3, progress=False).save_to_disk(str(other))
    before = _listing(run)
    with pytest.raises(ValueError, match=rf"cannot resume from {re.escape(str(run / 'last'))}: it trained on other "
                                         rf"data.*val_ids_captions"):
        train(MODEL, FAST.replace(epochs=2), other, run, resume=True, progress=False)
    assert _listing(run) == before
    moved = shutil.copytree(data, tmp_path / "moved")
    _, summary = train(MODEL, FAST.replace(epochs=2), moved, run, resume=True, progress=False)
    assert summary["steps"] == 4


@pytest.mark.parametrize("stop_at, checkpoint", [(3, True), (1, False)])
def test_ctrl_c_names_the_checkpoint_and_the_command_that_resumes(data, tmp_path, monkeypatch, capsys, stop_at,
                                                                  checkpoint):
    real_train, out = train_module.train, tmp_path / "run"

    def interrupted_at_a_step(*args, **kwargs):
        def on_step(state, model):
            if state.step == stop_at:
                raise KeyboardInterrupt
        return real_train(*args, **kwargs, on_step=on_step)

    monkeypatch.setattr(train_module, "train", interrupted_at_a_step)
    argv = _cli(data, out, "--set=epochs=2", "--set=checkpoint_every=100")  # checkpoints at each epoch's end
    try:
        code = main(argv)
    except KeyboardInterrupt:  # a failure of this test, not the end of the test session
        pytest.fail("main() let KeyboardInterrupt through (a traceback, no hint)")
    assert code == 130
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    if not checkpoint:
        assert f"before the first checkpoint (none in {out / 'last'})" in line
        assert shlex.split(line.split("start again with: ")[1]) == ["python", "-m", "hat_min", *argv, "--overwrite"]
        return
    assert f"the last checkpoint is {out / 'last'};" in line
    assert torch.load(out / "last" / STATE_NAME, weights_only=True)["state"]["step"] == 2  # not the interrupted step
    command = shlex.split(line.split("resume with: ")[1])
    assert command == ["python", "-m", "hat_min", *argv, "--resume"]
    monkeypatch.undo()
    assert main(command[3:]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 4


def test_stale_temporary_folders_go_but_the_previous_checkpoint_stays(data, run):
    (run / "last").rename(run / ".last.old")  # a crash between the two renames of a checkpoint's swap
    stale = run / ".last.k3j9x0qa"  # a save killed half-way: it holds the marker our saves write
    stale.mkdir()
    (stale / TEMP_MARKER).write_text("1 somehost\n")
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    _, summary = train(MODEL, FAST, data, run, resume=True, progress=False)  # complete: resumes, trains nothing
    assert summary["steps"] == 2 and not stale.exists() and (run / ".last.old" / STATE_NAME).is_file()


@pytest.mark.parametrize("poison_at, saved", [(1, None), (3, 3)])
def test_a_non_finite_loss_says_whether_a_checkpoint_exists(data, tmp_path, poison_at, saved):
    def poison(state, model):
        if state.step == poison_at:
            with torch.no_grad():
                model.image_proj[0].weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=f"at step {poison_at + 1}; stopped") as caught:
        train(MODEL, FAST.replace(epochs=3), data, tmp_path / "run", progress=False, on_step=poison)
    message = str(caught.value)
    if saved is None:
        assert "no checkpoint was written yet" in message and "last good checkpoint" not in message
        assert find_checkpoint(tmp_path / "run" / "last") is None
    else:
        assert f"the last good checkpoint ({tmp_path / 'run' / 'last'}, step {saved}) is kept" in message


def test_a_run_that_never_validated_has_a_json_summary(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "_validate", lambda *args, **kwargs: None)
    assert main(_cli(data, tmp_path / "run", "--set=epochs=1")) == 0

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1], parse_constant=no_constants)
    assert summary["best_rsum"] is None and summary["steps"] == 2


def test_a_log_line_torn_by_a_kill_is_dropped_and_a_corrupt_one_named(data, run):
    log = run / "metrics.jsonl"
    good = log.read_text()
    log.write_text(good + '{"step": 3, "lo')  # killed in the middle of writing step 3's record
    _, summary = train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
    assert summary["steps"] == 4 and [r["step"] for r in read_metrics(log)[0]] == [1, 2, 3, 4]
    log.write_text("not json\n" + log.read_text())
    with pytest.raises(ValueError, match=rf"{re.escape(str(log))} line 1 is not a metrics record"):
        train(MODEL, FAST.replace(epochs=3), data, run, resume=True, progress=False)
