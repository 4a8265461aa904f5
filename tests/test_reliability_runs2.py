"""Reliability, round two (issue 22): no run inside its dataset, one run per folder, no folder deleted by its name
alone, shipped weights verified, checkpoints with missing fields refused, every expected failure one line, run
files with the umask's modes, queries without a known word refused."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import hat_min.encoders as encoders
import hat_min.training.loop as train_module
from hat_min import HAT, HATConfig
from hat_min.__main__ import main
from hat_min.training.checkpoint import STATE_NAME, TEMP_MARKER, find_checkpoint
from hat_min.training.runlock import LOCK_NAME
from hat_min.training.loop import train
# The small model, recipe and run of round one, shared (a module-scoped data set and finished run for this file).
from test_reliability_runs import FAST, MODEL, _cli, _listing, data, finished, run  # noqa: F401


def _one_error_line(capsys) -> str:
    """stderr of a command that failed as expected: one line, ``error: ...``, no traceback (progress bars aside)."""
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line and not line.startswith("\r")]  # tqdm writes "\r..."
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- 1. the run folder apart from the data
@pytest.mark.parametrize("where, words", [(lambda d: d, "is the dataset"), (lambda d: d / "runs" / "a", "lies inside"),
                                          (lambda d: d.parent, "contains the dataset")])
def test_a_run_folder_overlapping_the_dataset_is_refused(data, capsys, where, words):
    before = _listing(data.parent)
    assert main(_cli(data, where(data))) == 2
    assert words in _one_error_line(capsys)
    assert _listing(data.parent) == before and not (data / "runs").exists()  # nothing written, not even a lock


# ----------------------------------------------------------------------------- 2. one run per folder
def _lock(folder: Path, pid: int, host: str = socket.gethostname()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(f"{pid} {host}\n")
    return folder / LOCK_NAME


# A live run: a process that wrote its pid into the lock file and holds the file's flock until killed.
HOLDER = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
          "os.ftruncate(fd, 0); os.write(fd, f'{os.getpid()} {sys.argv[2]}\\n'.encode()); print('held', flush=True); "
          "time.sleep(60)")


def _holder(folder: Path) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder / LOCK_NAME), socket.gethostname()],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_locked_by_a_live_run_is_refused_naming_its_pid(data, run, capsys):
    before = _listing(run)
    lock = run / LOCK_NAME
    holder = _holder(run)
    try:
        with pytest.raises(ValueError, match=rf"in use by another training run \(pid {holder.pid} on .*lock file "
                                             rf"{re.escape(str(lock))}\)"):
            train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
        assert main(_cli(data, run, "--resume", "--set=epochs=2")) == 2
        assert f"pid {holder.pid}" in _one_error_line(capsys)
    finally:
        holder.kill()
        holder.wait()
    _lock(run, 1234, host="another-host")  # its pid cannot be checked from here: refused, saying what to do
    with pytest.raises(ValueError, match=rf"pid 1234 on another-host.*if that run has ended, delete "
                                         rf"{re.escape(str(lock))}"):
        train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
    lock.unlink()
    assert _listing(run) == before


def test_a_lock_of_a_dead_run_is_taken_over_and_released_at_the_end(data, run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(run, dead.pid)
    _, summary = train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
    assert summary["steps"] == 4 and not (run / LOCK_NAME).exists()


@pytest.mark.skipif(sys.platform == "win32", reason="flock: without it the pid alone decides")
def test_a_dead_runs_lock_whose_pid_now_names_another_process_is_taken_over(data, run):
    _lock(run, os.getpid())  # a live pid, but nobody holds the flock: its run died and the pid was given out again
    _, summary = train(MODEL, FAST.replace(epochs=2), data, run, resume=True, progress=False)
    assert summary["steps"] == 4 and not (run / LOCK_NAME).exists()


def test_a_second_run_started_during_a_run_is_refused_and_the_first_finishes(data, tmp_path):
    out, refused = tmp_path / "run", []

    def second_run(state, model):
        if state.step == 1:
            with pytest.raises(ValueError, match=rf"{re.escape(str(out))} is in use by another training run "
                                                 rf"\(pid {os.getpid()}") as err:
                train(MODEL, FAST, data, out, overwrite=True, progress=False)
            refused.append(str(err.value))

    _, summary = train(MODEL, FAST, data, out, progress=False, on_step=second_run)
    assert refused and summary["steps"] == 2 and find_checkpoint(out / "last") is not None
    assert not (out / LOCK_NAME).exists()


def test_the_lock_is_released_when_a_run_fails(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="cannot resume"):
        train(MODEL, FAST, data, out, resume=True, progress=False)
    assert not out.exists()  # the folder the lock made, empty, is gone again
    train(MODEL, FAST, data, out, progress=False)  # and the next run may start


# ----------------------------------------------------------------------------- 3. only our temporary folders go
def test_a_start_removes_our_stale_temporary_folders_but_not_a_users_copies(data, run):
    shutil.copytree(run / "last", run / ".last.bak")  # the user's copy of a checkpoint
    (run / ".last.notes").mkdir()
    stale = run / ".last.k3j9x0qa"  # a save killed half-way: it holds the marker
    stale.mkdir()
    (stale / TEMP_MARKER).write_text("12345 somehost\n")
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    assert not (run / "last" / TEMP_MARKER).exists()  # a finished checkpoint, and so its copies, hold no marker
    _, summary = train(MODEL, FAST, data, run, resume=True, progress=False)  # complete: resumes, trains nothing
    assert summary["steps"] == 2 and not stale.exists()
    assert (run / ".last.bak" / STATE_NAME).is_file() and (run / ".last.notes").is_dir()


# ----------------------------------------------------------------------------- 4. shipped weights verified
def test_shipped_weights_with_a_flipped_byte_are_refused_with_how_to_restore(tmp_path, monkeypatch):
    for suffix in (".safetensors", ".json"):
        shutil.copy(encoders.WEIGHTS_DIR / f"scenes_swin{suffix}", tmp_path / f"scenes_swin{suffix}")
    monkeypatch.setattr(encoders, "WEIGHTS_DIR", tmp_path)
    hashed = []
    real_sha256 = encoders.file_sha256
    monkeypatch.setattr(encoders, "file_sha256", lambda path: hashed.append(path) or real_sha256(path))
    intact = encoders.read_weights("scenes_swin", "backbone.")
    encoders.read_weights("scenes_swin", "backbone.")
    assert len(hashed) == 1  # once per file version and process
    path = tmp_path / "scenes_swin.safetensors"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x40  # inside the tensor data: the file still parses
    path.write_bytes(bytes(blob))
    assert load_file(str(path)).keys() == load_file(str(encoders.WEIGHTS_DIR / path.name)).keys()
    with pytest.raises(ValueError, match=r"scenes_swin.safetensors does not match the sha256 on its card "
                                         r"scenes_swin.json.*git checkout -- hat_min/weights/scenes_swin"):
        encoders.read_weights("scenes_swin", "backbone.")
    with pytest.raises(ValueError, match="does not match the sha256"):
        HAT(HATConfig.preset("minilm", text_model="scratch", levels=((1, 2), (2, 3), (3, 4))))  # the model too
    (tmp_path / "scenes_swin.json").unlink()
    with pytest.raises(ValueError, match="scenes_swin.json, the card of .* is missing"):
        encoders.read_weights("scenes_swin", "backbone.")
    assert intact  # the untouched file loaded


# ----------------------------------------------------------------------------- 5. saved configs must be complete
def test_a_checkpoint_config_with_missing_fields_is_refused_until_upgraded(data, run, capsys):
    HAT.from_pretrained(run / "best")  # written by today's code: every field, loads
    path = run / "best" / "config.json"
    config = json.loads(path.read_text())
    del config["direction"], config["lambda_softmax"]
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} lacks the HATConfig fields direction, "
                                         rf"lambda_softmax.*python -m hat_min upgrade --checkpoint "
                                         rf"{re.escape(str(run / 'best'))}"):
        HAT.from_pretrained(run / "best")
    assert main(["evaluate", "--checkpoint", str(run / "best"), "--data", str(data), "--device", "cpu"]) == 2
    assert "direction, lambda_softmax" in _one_error_line(capsys)
    model = HAT.from_pretrained(run / "best", allow_missing=True)  # explicit: filled, and said
    assert (model.config.direction, model.config.lambda_softmax) == ("i2t", 9.0)
    assert "missing fields given today's defaults: direction='i2t', lambda_softmax=9.0" in capsys.readouterr().err
    assert main(["upgrade", "--checkpoint", str(run / "best")]) == 0
    assert "added direction, lambda_softmax" in capsys.readouterr().out
    assert json.loads(path.read_text())["direction"] == "i2t" and HAT.from_pretrained(run / "best")


# ----------------------------------------------------------------------------- 6. one error line, not a traceback
@pytest.mark.parametrize("extra, words", [
    (["--set=lambda_softmax=1e308"], "lambda_softmax must be at most"),
    (["--set=text_model=/etc"], "text_model '/etc' is not a BERT"),
    (["--device", "bogus"], "'bogus' is not a device"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--set=seed=99999999999999999999999"], "seed must be in 0..4294967295"),
])
def test_train_failures_are_one_line_and_leave_the_earlier_run(data, run, capsys, monkeypatch, extra, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = _listing(run)
    assert main(_cli(data, run, "--overwrite", *extra)) == 2
    assert words in _one_error_line(capsys)
    assert _listing(run) == before


def test_a_loss_that_is_nan_at_the_first_step_is_one_line_and_deletes_nothing(data, run, capsys, monkeypatch):
    monkeypatch.setattr(train_module, "_train_step", lambda run, batches: (float("nan"), 0.0))
    before = _listing(run)
    assert main(_cli(data, run, "--overwrite")) == 1
    err = _one_error_line(capsys)
    assert f"the loss became nan at step 1; stopped, the earlier run in {run} is left as it was" in err
    assert _listing(run) == before  # --overwrite deletes the earlier run only once a step went well


@pytest.mark.parametrize("device, words", [("bogus", "'bogus' is not a device"), ("cuda", "CUDA is not available")])
def test_evaluate_on_a_device_that_is_not_here_is_one_line(data, run, capsys, monkeypatch, device, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["evaluate", "--checkpoint", str(run / "best"), "--data", str(data), "--device", device]) == 2
    assert words in _one_error_line(capsys)


def _wrong_shape(w):
    w["image_proj.0.weight"] = torch.zeros(3, 3)


@pytest.mark.parametrize("change, words", [
    (_wrong_shape, "of another shape: image_proj.0.weight (3, 3) (model (32, 32))"),
    (lambda w: w.pop("text_proj.1.bias"), "missing: text_proj.1.bias"),
    (lambda w: w.update({"extra.weight": torch.zeros(2)}), "unknown: extra.weight"),
])
def test_a_checkpoint_with_other_tensors_names_them_in_one_line(data, run, capsys, change, words):
    path = run / "best" / "model.safetensors"
    weights = load_file(str(path))
    change(weights)
    save_file(weights, str(path))
    with pytest.raises(ValueError, match="does not fit the model of its config.json"):
        HAT.from_pretrained(run / "best")
    assert main(["evaluate", "--checkpoint", str(run / "best"), "--data", str(data), "--device", "cpu"]) == 2
    err = _one_error_line(capsys)
    assert str(path) in err and words in err


def test_a_truncated_arrow_file_of_the_dataset_is_one_line(data, run, tmp_path, capsys):
    damaged = shutil.copytree(data, tmp_path / "damaged")
    (arrow,) = (damaged / "test").glob("*.arrow")
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    assert main(["evaluate", "--checkpoint", str(run / "best"), "--data", str(damaged), "--device", "cpu"]) == 2
    assert f"the dataset at {damaged} is truncated or corrupt" in _one_error_line(capsys)


def test_a_checkpoint_with_nan_weights_says_so_not_to_change_the_dtype(data, run, capsys):
    path = run / "best" / "model.safetensors"
    weights = load_file(str(path))
    weights["text_proj.0.weight"][0, 0] = float("nan")
    save_file(weights, str(path))
    assert main(["evaluate", "--checkpoint", str(run / "best"), "--data", str(data), "--device", "cpu"]) == 2
    err = _one_error_line(capsys)
    assert "weights contain NaN or infinite values (text_proj.0.weight)" in err and "dtype" not in err


# ----------------------------------------------------------------------------- 7. the umask's modes
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_a_run_folder_gets_the_modes_of_the_umask(data, tmp_path, mask):
    old = os.umask(mask)
    try:
        train(MODEL, FAST, data, tmp_path / "run", progress=False)
    finally:
        os.umask(old)
    paths = [tmp_path / "run", *(tmp_path / "run").rglob("*")]
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in paths}
    want = {p: oct((0o777 if (tmp_path / p).is_dir() else 0o666) & ~mask) for p in modes}
    assert modes == want and {"run/last", "run/best/model.safetensors", "run/last/data.json"} <= set(modes)


# ----------------------------------------------------------------------------- 8. queries without a known word
@pytest.mark.parametrize("query", ["\x00", "\U0001F600\U0001F680", " \x00 \U0001F600 "])
def test_a_query_without_a_known_word_is_refused(tiny_model, data, query):
    from hat_min.encoders import load_tokenizer
    from hat_min.evaluation.data import load_splits
    from hat_min.evaluation.protocols import encode
    from hat_min.tutorial.viz import query_scores

    tokenizer = load_tokenizer(tiny_model.config)
    encoded = encode(tiny_model, load_splits(data)["test"], device="cpu", progress=False, workers=0)
    assert query_scores(tiny_model, encoded, "a red circle \U0001F600", tokenizer).shape == (4,)  # words + emoji: fine
    with pytest.raises(ValueError, match="has no known words"):
        query_scores(tiny_model, encoded, query, tokenizer)
