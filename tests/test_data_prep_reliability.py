"""What the builders may replace, that what they write loads back, and that killed runs leave no litter.

- `--overwrite` replaces only a dataset folder a builder wrote (marker `hat_min_dataset.json`, or the
  exact shape of an older one), never a folder holding anything else nor one holding the inputs;
- every builder loads its output back before renaming it into place; an empty split is written so
  that the whole dataset still loads (a test-only Karpathy file made the dataset unloadable);
- the hidden `.OUT.tmp-*` staging folder of a killed build is removed by the next build of OUT.
"""
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from PIL import Image

from data_prep import DataPrepError, hub, karpathy, synthetic
from data_prep._common import BASE_FEATURES
from data_prep._write import MARKER, not_a_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_train=4, n_val=4, n_test=4, progress=False)


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 5), (seed * 40 % 256, 90, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _karpathy_files(folder: Path, splits: list[str], json_inside: Path | None = None) -> tuple[Path, Path]:
    """An image folder and a Karpathy split file with one image per entry of `splits`."""
    root = folder / "imgs"
    root.mkdir(parents=True)
    images = []
    for i, split in enumerate(splits):
        (root / f"{i}.png").write_bytes(_png(i))
        images.append({"filename": f"{i}.png", "split": split, "imgid": i,
                       "sentences": [{"raw": f"caption {k} of image {i}"} for k in range(5)]})
    path = (json_inside or folder) / "dataset_flickr30k.json"
    path.write_text(json.dumps({"dataset": "flickr30k", "images": images}), encoding="utf-8")
    return path, root


def _snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hub_like(n: int = 3) -> datasets.DatasetDict:
    """Hub data with embedded images and a split column (the nlphuji/flickr30k layout)."""
    feats = datasets.Features({"image": datasets.Image(), "caption": datasets.List(datasets.Value("string")),
                               "split": datasets.Value("string"), "img_id": datasets.Value("string"),
                               "filename": datasets.Value("string")})
    cols = {"image": [{"bytes": _png(i), "path": None} for i in range(n)],
            "caption": [[f"c{k}" for k in range(5)] for _ in range(n)],
            "split": (["train", "val", "test"] * n)[:n], "img_id": [str(i) for i in range(n)],
            "filename": [f"{i}.jpg" for i in range(n)]}
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(cols, features=feats)})


def _build_with(builder: str, out: Path, tmp_path: Path, overwrite: bool = False):
    """Run one of the three builders into `out` with tiny data."""
    if builder == "synthetic":
        return synthetic.build(out, overwrite=overwrite, **TINY)
    if builder == "karpathy":
        path, root = _karpathy_files(tmp_path / f"src-{len(list(tmp_path.iterdir()))}", ["train", "val", "test"])
        return karpathy.build(path, root, out, overwrite=overwrite, progress=False)
    return hub.convert(_hub_like(), out, "flickr30k", overwrite=overwrite, ignore_sizes=True, progress=False)


# ----------------------------------------------------------------------------- 1. what --overwrite may replace
def test_cli_overwrite_refuses_an_out_that_holds_the_image_root(tmp_path):
    kpx = tmp_path / "kpx"
    path, root = _karpathy_files(kpx, ["train", "val", "test"])
    before = _snapshot(kpx)
    cmd = [sys.executable, "-m", "data_prep.karpathy", "--json", str(path), "--image-root", str(root),
           "--out", str(kpx), "--overwrite"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert f"refusing to write to {kpx}: it contains the image root {root}" in done.stderr
    assert _snapshot(kpx) == before  # images and JSON untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kpx"]  # no staging folder either


def test_out_may_not_be_or_contain_the_split_file_or_image_root(tmp_path):
    (tmp_path / "ds").mkdir()
    path, root = _karpathy_files(tmp_path / "src", ["train", "val", "test"], json_inside=tmp_path / "ds")
    with pytest.raises(DataPrepError, match="it contains the split file") as err:
        karpathy.build(path, root, tmp_path / "ds", overwrite=True, progress=False)
    assert err.value.code == 2 and path.is_file()
    with pytest.raises(DataPrepError, match="it is the image root"):
        karpathy.build(path, root, root, overwrite=True, progress=False)
    assert len(list(root.iterdir())) == 3


@pytest.mark.parametrize("builder", ["synthetic", "karpathy", "hub"])
def test_overwrite_refuses_what_no_builder_wrote(tmp_path, builder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my thesis")
    with pytest.raises(DataPrepError) as err:
        _build_with(builder, out, tmp_path, overwrite=True)
    assert err.value.code == 2 and "\n" not in str(err.value)
    message = str(err.value)
    assert str(out) in message and "not a dataset folder" in message and "no dataset_dict.json" in message
    assert (out / "notes.txt").read_text() == "my thesis"
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    with pytest.raises(DataPrepError, match="is not a folder") as err:
        _build_with(builder, a_file, tmp_path, overwrite=True)
    assert a_file.read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_overwrite_refuses_a_dataset_folder_someone_added_files_to(tmp_path):
    out = tmp_path / "syn"
    synthetic.build(out, **TINY)
    (out / "imgs").mkdir()
    (out / "imgs" / "0.png").write_bytes(_png(0))
    with pytest.raises(DataPrepError, match="it holds 'imgs', which no builder writes"):
        synthetic.build(out, overwrite=True, **TINY)
    (out / "imgs" / "0.png").rename(out / "train" / "0.png")
    (out / "imgs").rmdir()
    with pytest.raises(DataPrepError, match="train/0.png"):
        synthetic.build(out, overwrite=True, **TINY)
    assert (out / "train" / "0.png").read_bytes() == _png(0)


def test_overwrite_replaces_dataset_folders_with_and_without_marker(tmp_path):
    out = tmp_path / "syn"
    (out).mkdir()  # an empty folder is fine
    synthetic.build(out, **TINY)
    marker = json.loads((out / MARKER).read_text())
    assert marker["builder"] == "data_prep.synthetic" and marker["rows"] == {"train": 4, "val": 4, "test": 4,
                                                                       "test_unseen": 4, "test_frames": 4,
                                                                       "test_words": 4}
    assert marker["files"] == ["synthetic.json"] and not_a_dataset(out) is None
    with pytest.raises(DataPrepError, match="pass --overwrite"):
        synthetic.build(out, **TINY)
    synthetic.build(out, overwrite=True, **{**TINY, "n_train": 8})
    (out / MARKER).unlink()  # a folder written before the marker existed
    assert not_a_dataset(out) is None
    synthetic.build(out, overwrite=True, **TINY)
    assert len(datasets.load_from_disk(str(out))["train"]) == 4 and (out / MARKER).is_file()


@pytest.mark.parametrize("builder", ["karpathy", "hub"])
def test_every_builder_marks_its_output_and_may_replace_it(tmp_path, builder):
    out = tmp_path / "out"
    _build_with(builder, out, tmp_path)
    marker = json.loads((out / MARKER).read_text())
    assert marker["builder"] == f"data_prep.{builder}" and marker["files"] == ["report.json"]
    assert marker["rows"] == {"train": 1, "val": 1, "test": 1}
    _build_with(builder, out, tmp_path, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(["dataset_dict.json", MARKER, "report.json",
                                                            "train", "val", "test"])


# ----------------------------------------------------------------------------- 2. written = loadable
def test_karpathy_file_with_only_test_images_gives_a_loadable_dataset(tmp_path):
    path, root = _karpathy_files(tmp_path / "src", ["test"] * 6)
    out = tmp_path / "kp"
    cmd = [sys.executable, "-m", "data_prep.karpathy", "--json", str(path), "--image-root", str(root),
           "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = datasets.load_from_disk(str(out))  # raised IndexError before, after "wrote 6 images"
    assert {s: len(d) for s, d in loaded.items()} == {"train": 0, "val": 0, "test": 6}
    assert "wrote 6 images (train 0, val 0, test 6)" in done.stdout
    assert "warning: splits train, val are empty, written as empty splits (training needs a train split)" in done.stdout
    assert all(d.features == BASE_FEATURES for d in loaded.values())
    assert loaded["test"]["image_id"] == list(range(6)) and loaded["test"][5]["captions"][0] == "caption 0 of image 5"
    assert json.loads((out / "report.json").read_text())["empty_splits"] == ["train", "val"]
    assert json.loads((out / MARKER).read_text())["empty_splits"] == ["train", "val"]


def test_a_dataset_that_does_not_load_back_is_not_committed(tmp_path, monkeypatch):
    out = tmp_path / "syn"
    synthetic.build(out, **TINY)
    before = _snapshot(out)
    save = datasets.DatasetDict.save_to_disk

    def save_then_lose_a_shard(self, path, **kwargs):
        save(self, path, **kwargs)
        for f in (Path(path) / "test").glob("data-*.arrow"):
            f.unlink()
    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", save_then_lose_a_shard)
    with pytest.raises(DataPrepError, match="does not load back .*OUT was left as it was"):
        synthetic.build(out, overwrite=True, **{**TINY, "n_test": 8})
    assert _snapshot(out) == before  # the old dataset is still there, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


# ----------------------------------------------------------------------------- 3. killed builds
def test_staging_folders_of_killed_builds_are_removed_by_the_next_build(tmp_path):
    out = tmp_path / "syn"
    killed = ("import os, signal, sys\nfrom data_prep._write import staging\n"
              "with staging(sys.argv[1]) as work:\n    (work / 'dataset').mkdir()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", killed, str(out)], cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == -9
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".syn.tmp-")]
    assert len(left) == 1 and (left[0] / "dataset").is_dir()  # what SIGKILL leaves behind
    dead_pid, host = (left[0] / "owner.pid").read_text().split()
    assert host == socket.gethostname() and int(dead_pid) != os.getpid()
    old = tmp_path / ".syn.tmp-old"  # no owner file: not made by this code (a user's folder), left alone
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    live = tmp_path / ".syn.tmp-live"  # a build still running (this process)
    live.mkdir()
    (live / "owner.pid").write_text(f"{os.getpid()} {host}\n")
    for name in (".other.tmp-x", ".synthetic.tmp-y"):  # other OUT names, even with a dead owner
        (tmp_path / name).mkdir()
        (tmp_path / name / "owner.pid").write_text(f"{dead_pid} {host}\n")
    synthetic.build(out, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-x", ".syn.tmp-live", ".syn.tmp-old", ".synthetic.tmp-y", "syn"]
    assert len(datasets.load_from_disk(str(out))["test"]) == 4
