"""Issue 22, data_prep: no file read or written outside the folders given, no folder deleted by a name
pattern alone, bounded sizes, and paths checked before the work.

- `data_prep.karpathy` refuses split-file entries whose path leads outside `--image-root` (`..`, absolute
  paths; the user's own links under the root are followed), reported with the other bad entries;
- `data_prep.hub` refuses COCO download destinations outside `--image-cache` and URLs other than http(s),
  naming the row, before anything is downloaded;
- a build removes only staging folders its own code marked (`owner.pid` of a dead process), never a
  user's `.OUT.tmp-*` folder;
- `data_prep.synthetic` bounds its image size and split sizes (CLI: one line, exit code 2; API: ValueError);
- an OUT (or image cache) below a regular file fails with one line before any work.
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

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_train=4, n_val=4, n_test=4, progress=False)
OUTSIDE = "outside the image root"


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 5), (seed * 40 % 256, 90, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _entry(filename: str, imgid: int, split: str = "train", filepath: str | None = None) -> dict:
    item = {"filename": filename, "split": split, "imgid": imgid,
            "sentences": [{"raw": f"caption {k} of image {imgid}"} for k in range(5)]}
    return item if filepath is None else {**item, "filepath": filepath}


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def _one_line_error(done: subprocess.CompletedProcess, code: int) -> str:
    """The single stderr line of a CLI that failed with `code` (asserted)."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr.strip()


# ----------------------------------------------------------------------------- 1. karpathy: inside the image root
@pytest.fixture
def escaping_split_file(tmp_path):
    """An image root with three good images, a secret PNG beside it, and entries that reach for the secret."""
    root, secret = tmp_path / "imgs", tmp_path / "secret" / "secret.png"
    (root / "sub").mkdir(parents=True)
    secret.parent.mkdir()
    secret.write_bytes(_png(99))
    (secret.parent / "other.png").write_bytes(_png(98))
    for i in range(3):
        (root / f"{i}.png").write_bytes(_png(i))
    images = [_entry("0.png", 0, "train"), _entry("1.png", 1, "val"), _entry("2.png", 2, "test"),
              _entry("../secret/secret.png", 10), _entry(str(secret), 11), _entry("other.png", 13, filepath="../secret"),
              _entry("../../../../../../../../etc/hostname", 15)]
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"dataset": "flickr30k", "images": images}), encoding="utf-8")
    return path, root, secret


def test_karpathy_strict_refuses_entries_outside_the_image_root(escaping_split_file, tmp_path):
    path, root, _ = escaping_split_file
    out = tmp_path / "out"
    with pytest.raises(karpathy.ProblemsFound) as err:
        karpathy.build(path, root, out, progress=False)
    assert err.value.code == 1
    reasons = {p["imgid"]: p["reasons"] for p in err.value.report["left_out"]}
    assert reasons == {i: [OUTSIDE] for i in (10, 11, 13, 15)}  # not "not an image": never opened
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["dataset_flickr30k.json", "imgs",
                                                                               "secret"]
    done = _run("data_prep.karpathy", "--json", str(path), "--image-root", str(root), "--out", str(out))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "4 of 7 images have problems; nothing was written" in done.stderr
    assert f"../secret/secret.png (train, imgid 10): {OUTSIDE}" in done.stderr and not out.exists()


def test_karpathy_skip_bad_leaves_entries_outside_the_image_root_out(escaping_split_file, tmp_path):
    path, root, secret = escaping_split_file
    out = tmp_path / "out"
    report = karpathy.build(path, root, out, skip_bad=True, progress=False)
    assert report["kept"] == {"train": 1, "val": 1, "test": 1}
    assert {p["filename"]: p["reasons"] for p in report["left_out"]} == {
        "../secret/secret.png": [OUTSIDE], str(secret): [OUTSIDE], "../secret/other.png": [OUTSIDE],
        "../../../../../../../../etc/hostname": [OUTSIDE]}
    on_disk = json.loads((out / "report.json").read_text())
    assert [p["imgid"] for p in on_disk["left_out"]] == [10, 11, 13, 15]
    loaded = datasets.load_from_disk(str(out))
    stored = [row["image"]["bytes"] for split in loaded.values()
              for row in split.cast_column("image", datasets.Image(decode=False))]
    assert sorted(stored) == sorted(_png(i) for i in range(3))  # the secrets are not among them


def test_karpathy_follows_the_users_own_links_under_the_image_root(escaping_split_file, tmp_path):
    """The rule is about the paths written in the split file: a link the user made under the root (a
    folder of images on another disk) is followed."""
    path, root, secret = escaping_split_file
    (root / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    images = json.loads(path.read_text())["images"][:3] + [_entry("secret.png", 20, filepath="elsewhere")]
    path.write_text(json.dumps({"dataset": "flickr30k", "images": images}), encoding="utf-8")
    report = karpathy.build(path, root, tmp_path / "out", progress=False)
    assert report["kept"] == {"train": 2, "val": 1, "test": 1} and report["left_out"] == []


def test_karpathy_accepts_an_image_root_reached_through_a_link(escaping_split_file, tmp_path):
    path, root, _ = escaping_split_file
    images = json.loads(path.read_text())["images"][:3]
    path.write_text(json.dumps({"dataset": "flickr30k", "images": images}), encoding="utf-8")
    (tmp_path / "root-link").symlink_to(root, target_is_directory=True)
    report = karpathy.build(path, tmp_path / "root-link", tmp_path / "out", progress=False)
    assert report["kept"] == {"train": 1, "val": 1, "test": 1} and report["left_out"] == []


# ---------------------------------------------------------------- 2. hub: inside the image cache, http(s) only
def _coco_rows(rows: list[dict]) -> datasets.DatasetDict:
    """URL-only hub data in the yerevann/coco-karpathy schema, one hub split per Karpathy split."""
    full = [{"filepath": "val2014", "sentids": [0], "imgid": 100 + i, "cocoid": 100 + i, "split": "test",
             "sentences": [f"caption of {i}"], "url": f"http://images.example/{i}.jpg", **row}
            for i, row in enumerate(rows)]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(full)})


@pytest.mark.parametrize("row, why", [
    ({"filename": "../../x.png"}, "outside the image cache"),
    ({"filepath": "/tmp/hat_min_evil", "filename": "x.png"}, "outside the image cache"),
    ({"filepath": "", "filename": "/tmp/hat_min_evil.png"}, "outside the image cache"),
    ({"filepath": "val2014/../..", "filename": "x.png"}, "outside the image cache"),
    ({"filename": "x.png", "url": "file:///etc/hostname"}, "URL scheme 'file'"),
    ({"filename": "x.png", "url": "ftp://images.example/x.png"}, "URL scheme 'ftp'"),
    ({"filename": "x.png", "url": "data:image/png;base64,AAAA"}, "URL scheme 'data'"),
])
def test_coco_refuses_rows_that_write_outside_the_cache_or_are_not_http(tmp_path, monkeypatch, row, why):
    fetched = []
    monkeypatch.setattr(hub, "_fetch", lambda url, dest, *a, **k: fetched.append((url, dest)))
    cache = tmp_path / "deep" / "cache"
    data = _coco_rows([{"filename": "ok.jpg"}, row])
    with pytest.raises(DataPrepError) as err:
        hub.build_coco(data, tmp_path / "out", cache, ignore_sizes=True)
    message = str(err.value)
    assert why in message and "imgid 101" in message and "\n" not in message
    assert fetched == []  # checked before anything is downloaded
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.png").exists()


def test_coco_downloads_http_urls_into_the_cache(tmp_path, http_folder):
    folder, base = http_folder
    rows = []
    for i, split in enumerate(["train", "val", "test"]):
        (folder / f"{i}.png").write_bytes(_png(i))
        rows.append({"filename": f"COCO_{i}.png", "split": split, "url": f"{base}/{i}.png"})
    cache = tmp_path / "cache"
    report = hub.build_coco(_coco_rows(rows), tmp_path / "out", cache, ignore_sizes=True)
    assert report["kept"] == {"train": 1, "val": 1, "test": 1} and report["left_out"] == []
    assert (cache / "val2014" / "COCO_2.png").read_bytes() == _png(2)


# ---------------------------------------------------------------- 3. only marked staging folders are removed
def _dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_users_tmp_folder_survives_a_build_and_a_marked_dead_one_goes(tmp_path):
    out = tmp_path / "syn"
    mine = tmp_path / ".syn.tmp-mine"  # a user's folder that happens to match the pattern
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    os.utime(mine, (time.time() - 3600, time.time() - 3600))  # older than this process
    dead = tmp_path / ".syn.tmp-dead"
    (dead / "dataset").mkdir(parents=True)
    (dead / "owner.pid").write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    synthetic.build(out, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".syn.tmp-mine", "syn"]
    assert (mine / "notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- 4. synthetic: bounded sizes
@pytest.mark.parametrize("kwargs, limit", [
    ({"image_size": 100_000}, "image_size must be between 32 and 512"),
    ({"image_size": 513}, "image_size must be between 32 and 512"),
    ({"image_size": 31}, "image_size must be between 32 and 512"),
    ({"n_train": 10**9}, "n_train must be between 1 and 200,000"),
    ({"n_val": 50_001}, "n_val must be between 1 and 50,000"),
    ({"n_test": 50_001}, "n_test must be between 1 and 50,000"),
    ({"n_unseen": 50_001}, "n_unseen must be between 1 and 50,000"),
    ({"n_train": 0}, "n_train must be between 1 and 200,000"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"n_train": 100_000, "image_size": 512}, "at most 8,589,934,592 pixels"),
])
def test_generate_refuses_sizes_beyond_the_limits_before_allocating(monkeypatch, kwargs, limit):
    def no_work(*args, **kw):
        raise AssertionError("work started")
    monkeypatch.setattr(synthetic, "_split_scenes", no_work)
    monkeypatch.setattr(synthetic, "_make_row", no_work)
    with pytest.raises(ValueError, match=limit) as err:
        synthetic.generate(**{**TINY, **kwargs})
    assert isinstance(err.value, DataPrepError) and err.value.code == 2 and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=limit):
        synthetic.build("/nonexistent/never", **{**TINY, **kwargs})


@pytest.mark.parametrize("args, limit", [
    (["--image-size", "100000"], "--image-size must be between 32 and 512"),
    (["--n-train", "1000000000"], "--n-train must be between 1 and 200,000"),
    (["--n-unseen", "0"], "--n-unseen must be between 1 and 50,000"),
])
def test_cli_refuses_sizes_beyond_the_limits_in_one_line(tmp_path, args, limit):
    out = tmp_path / "syn"
    line = _one_line_error(_run("data_prep.synthetic", "--out", str(out), *args), 2)
    assert line.startswith("error: ") and limit in line
    assert list(tmp_path.iterdir()) == []


def test_help_states_the_limits():
    done = _run("data_prep.synthetic", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for limit in ("32 to 512", "1 to 200,000", "1 to 50,000", "8,589,934,592 pixels"):
        assert limit in text


# ----------------------------------------------------------------------------- 5. output paths checked before the work
def test_synthetic_out_below_a_regular_file_fails_in_one_line_before_rendering(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    line = _one_line_error(_run("data_prep.synthetic", "--out", str(afile / "sub"), "--n-train", "4"), 2)
    assert f"cannot create {afile / 'sub'}: {afile} is not a folder" in line
    monkeypatch.setattr(synthetic, "generate", lambda **kw: pytest.fail("rendered before checking --out"))
    with pytest.raises(DataPrepError, match="is not a folder") as err:
        synthetic.build(afile / "sub" / "deeper", **TINY)
    assert err.value.code == 2 and afile.read_text() == "keep"


def test_every_builder_checks_out_below_a_file_first(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "0.png").write_bytes(_png(0))
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"images": [_entry("0.png", 0)]}))
    monkeypatch.setattr(karpathy, "check_entry", lambda *a: pytest.fail("images read before checking --out"))
    with pytest.raises(DataPrepError, match="is not a folder") as err:
        karpathy.build(path, root, afile / "out", progress=False)
    assert err.value.code == 2
    monkeypatch.setattr(hub, "_fetch", lambda *a, **k: pytest.fail("downloaded before checking the cache"))
    data = _coco_rows([{"filename": "0.jpg", "split": s} for s in ("train", "val", "test")])
    with pytest.raises(DataPrepError, match=f"cannot create {afile / 'cache'}: {afile} is not a folder") as err:
        hub.build_coco(data, tmp_path / "out", afile / "cache", ignore_sizes=True)
    assert err.value.code == 2 and afile.read_text() == "keep" and not (tmp_path / "out").exists()
