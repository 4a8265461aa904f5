"""Tests of data_prep.hub without network: offline message, conversion of hub-like data."""
import io
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from data_prep import DataPrepError, hub
from data_prep import _common as hub_common

ROOT = Path(__file__).resolve().parents[1]


def _jpeg(seed: int) -> bytes:
    arr = (np.random.default_rng(seed).random((24, 32, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def test_offline_flag_fails_at_once_with_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(hub.HubUnreachable) as err:
        hub.build("flickr30k", tmp_path / "out")
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert err.value.code == 2 and "unreachable" in message and "python -m data_prep.synthetic --out DIR" in message
    assert "\n" not in message and message.count(". ") == 0
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_is_detected_quickly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    assert "cannot connect to 127.0.0.1:9" in hub.offline_reason(timeout=3.0)
    assert time.perf_counter() - start < 4.0

    def refuse(*args, **kwargs):
        raise TimeoutError("timed out")
    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    with pytest.raises(hub.HubUnreachable, match="data_prep.synthetic"):
        hub.require_hub()


@pytest.mark.parametrize("dataset", ["flickr30k", "coco"])
def test_cli_offline_exit_code_2(tmp_path, dataset):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "data_prep.hub", "--dataset", dataset, "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "unreachable" in done.stderr and "python -m data_prep.synthetic --out DIR" in done.stderr
    assert not (tmp_path / "out").exists()


def _flickr_like(rows: list[tuple[str, bytes, list[str]]]) -> datasets.DatasetDict:
    """An in-memory copy of the nlphuji/flickr30k parquet schema: one hub split, a split column."""
    feats = datasets.Features({
        "image": datasets.Image(), "caption": datasets.List(datasets.Value("string")),
        "sentids": datasets.List(datasets.Value("string")), "split": datasets.Value("string"),
        "img_id": datasets.Value("string"), "filename": datasets.Value("string"),
    })
    cols = {
        "image": [{"bytes": b, "path": None} for _, b, _ in rows],
        "caption": [c for _, _, c in rows],
        "sentids": [[str(5 * i + k) for k in range(len(c))] for i, (_, _, c) in enumerate(rows)],
        "split": [s for s, _, _ in rows],
        "img_id": [str(i) for i in range(len(rows))],
        "filename": [f"{1000 + i}.jpg" for i in range(len(rows))],
    }
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(cols, features=feats)})


CAPS = ["A man rides a bike.", "Ein Mann fährt Rad 🚲", "  spaced  ", "a", "b", "sixth is dropped"]


def test_convert_flickr_like_hub_data(tmp_path):
    rows = [("train", _jpeg(0), CAPS), ("train", _jpeg(1), CAPS[:5]), ("val", _jpeg(2), CAPS[:5]),
            ("test", _jpeg(3), CAPS[:5]), ("test", _jpeg(4), CAPS[:5])]
    fake = _flickr_like(rows)
    with pytest.raises(DataPrepError, match="differ from the Karpathy protocol"):
        hub.convert(fake, tmp_path / "out", "flickr30k", progress=False)
    assert list(tmp_path.iterdir()) == []
    report = hub.convert(fake, tmp_path / "out", "flickr30k", ignore_sizes=True, progress=False)
    assert report["kept"] == {"train": 2, "val": 1, "test": 2} and report["left_out"] == []
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    first = loaded["train"].cast_column("image", datasets.Image(decode=False))[0]
    assert first["image"]["bytes"] == rows[0][1] and first["captions"] == CAPS[:5]
    assert first["image_id"] == 0 and first["filename"] == "1000.jpg"
    assert loaded["test"]["image_id"] == [3, 4]


def test_convert_reports_broken_hub_rows(tmp_path):
    rows = [("train", _jpeg(0), CAPS[:5]), ("val", b"not an image", CAPS[:5]), ("test", _jpeg(1), ["", "x"])]
    fake = _flickr_like(rows)
    with pytest.raises(DataPrepError, match="2 images have problems") as err:
        hub.convert(fake, tmp_path / "out", "flickr30k", ignore_sizes=True, progress=False)
    assert "1001.jpg: not an image" in str(err.value) and "1002.jpg: empty caption" in str(err.value)
    report = hub.convert(fake, tmp_path / "out", "flickr30k", skip_bad=True, ignore_sizes=True, progress=False)
    assert report["kept"] == {"train": 1, "val": 0, "test": 0}
    assert {p["filename"] for p in report["left_out"]} == {"1001.jpg", "1002.jpg"}


def test_check_sizes_accepts_the_protocol():
    hub.check_sizes("flickr30k", {"train": 29_000, "val": 1_014, "test": 1_000})
    hub.check_sizes("coco", {"train": 113_287, "val": 5_000, "test": 5_000})
    with pytest.raises(DataPrepError, match="expected train 113287"):
        hub.check_sizes("coco", {"train": 82_783, "val": 5_000, "test": 5_000})


def _coco_like(src: Path, base: str) -> datasets.DatasetDict:
    """An in-memory copy of the yerevann/coco-karpathy schema; URLs point at ``src`` served at ``base``."""
    def split(name: str, n: int, start: int) -> datasets.Dataset:
        rows = []
        for i in range(start, start + n):
            sub = "train2014" if name == "train" else "val2014"
            fname = f"COCO_{sub}_{i:012d}.jpg"
            (src / fname).write_bytes(_jpeg(i))
            rows.append({"filepath": sub, "sentids": [i * 10 + k for k in range(6)], "filename": fname, "imgid": i,
                         "split": name, "sentences": [f"caption {k} of {i}" for k in range(6)], "cocoid": 9000 + i,
                         "url": f"{base}/{fname}"})
        return datasets.Dataset.from_list(rows)
    return datasets.DatasetDict({"train": split("train", 3, 0), "validation": split("val", 1, 3),
                                 "test": split("test", 2, 4), "restval": split("restval", 2, 6)})


def test_build_coco_downloads_resumably_and_converts(tmp_path, http_folder):
    (src, base), cache = http_folder, tmp_path / "cache"
    fake = _coco_like(src, base)
    report = hub.build_coco(fake, tmp_path / "out", cache, ignore_sizes=True)
    assert report["kept"] == {"train": 5, "val": 1, "test": 2} and report["left_out"] == []
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert "val2014/COCO_val2014_000000000006.jpg" in loaded["train"]["filename"]  # restval -> train
    assert all(len(c) == 5 for c in loaded["train"]["captions"])
    for f in src.iterdir():  # a second run must not download again
        f.unlink()
    again = hub.build_coco(fake, tmp_path / "out", cache, ignore_sizes=True, overwrite=True)
    assert again["kept"] == report["kept"]


def test_fetch_replaces_a_stale_partial_file(tmp_path):
    source = tmp_path / "a.jpg"
    source.write_bytes(_jpeg(7))
    dest = tmp_path / "out" / "a.jpg"
    dest.parent.mkdir()
    (dest.parent / "a.jpg.part").write_bytes(b"garbage")
    assert hub._fetch(source.as_uri(), dest) is None
    assert dest.read_bytes() == source.read_bytes() and not (dest.parent / "a.jpg.part").exists()
    assert hub._fetch((tmp_path / "nope.jpg").as_uri(), tmp_path / "out" / "nope.jpg", retries=1) is not None


# ----------------------------------------------------------------------------- local copies of the public sources
# Offline stand-ins for the hub: tiny parquet files in the exact schema and file layout of each public
# dataset, loaded through the real path (`datasets.load_dataset(folder)` via `HubSource(folder)`).
NLPHUJI_FEATURES = datasets.Features({  # nlphuji/flickr30k, flickr30k.py `_info` (config TEST, one split test)
    "image": datasets.Image(), "caption": datasets.List(datasets.Value("string")),
    "sentids": datasets.List(datasets.Value("string")), "split": datasets.Value("string"),
    "img_id": datasets.Value("string"), "filename": datasets.Value("string"),
})
UMARU_README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: val
    path: data/val-*
  - split: test
    path: data/test-*
---
"""  # umaru97/flickr30k_train_val_test README.md: same features as nlphuji, hub splits train / val / test
COCO_FEATURES = datasets.Features({  # yerevann/coco-karpathy: Karpathy's dataset_coco.json fields + url, no images
    "filepath": datasets.Value("string"), "sentids": datasets.List(datasets.Value("int64")),
    "filename": datasets.Value("string"), "imgid": datasets.Value("int64"), "split": datasets.Value("string"),
    "sentences": datasets.List(datasets.Value("string")), "cocoid": datasets.Value("int64"),
    "url": datasets.Value("string"),
})
TINY_SIZES = {"train": 2, "val": 1, "test": 2}


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (seed * 37 % 256, 60, 120)).save(buf, format="PNG")
    return buf.getvalue()


def _flickr_rows(splits: list[str], first_id: int) -> dict:
    """Columns of nlphuji/flickr30k rows: 5 captions, string ids, the Karpathy split in `split`."""
    ids = range(first_id, first_id + len(splits))
    return {"image": [{"bytes": _png(i), "path": None} for i in ids],
            "caption": [[f"image {i} caption {k}" for k in range(5)] for i in ids],
            "sentids": [[str(5 * i + k) for k in range(5)] for i in ids], "split": list(splits),
            "img_id": [str(i) for i in ids], "filename": [f"{1000000 + i}.jpg" for i in ids]}


def _nlphuji_folder(folder: Path, splits: list[str], first_id: int = 0) -> Path:
    """nlphuji/flickr30k at refs/convert/parquet: the parquet converter's TEST/test/NNNN.parquet shards."""
    ds = datasets.Dataset.from_dict(_flickr_rows(splits, first_id), features=NLPHUJI_FEATURES)
    (folder / "TEST" / "test").mkdir(parents=True)
    half = len(ds) // 2
    ds.select(range(half)).to_parquet(str(folder / "TEST" / "test" / "0000.parquet"))
    ds.select(range(half, len(ds))).to_parquet(str(folder / "TEST" / "test" / "0001.parquet"))
    return folder


def _umaru_folder(folder: Path, splits: list[str], first_id: int = 0) -> Path:
    """umaru97/flickr30k_train_val_test: data/{train,val,test}-00000-of-00001.parquet plus its README configs."""
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(UMARU_README)
    rows = _flickr_rows(splits, first_id)
    for name in ("train", "val", "test"):
        keep = [i for i, s in enumerate(splits) if s == name]
        part = datasets.Dataset.from_dict({k: [v[i] for i in keep] for k, v in rows.items()}, features=NLPHUJI_FEATURES)
        part.to_parquet(str(folder / "data" / f"{name}-00000-of-00001.parquet"))
    return folder


@pytest.fixture
def offline_sources(tmp_path, monkeypatch):
    """Keep the datasets cache in tmp and relax the protocol sizes to TINY_SIZES (the check still runs)."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setitem(hub_common.PROTOCOL_SIZES, "flickr30k", TINY_SIZES)
    monkeypatch.setitem(hub_common.PROTOCOL_SIZES, "coco", {"train": 3, "val": 1, "test": 1})
    return tmp_path


def _check_flickr_output(out: Path, first_id: int = 0) -> None:
    loaded = datasets.load_from_disk(str(out))
    assert {s: len(d) for s, d in loaded.items()} == TINY_SIZES
    assert loaded["train"]["image_id"] == [first_id, first_id + 1] and loaded["val"]["image_id"] == [first_id + 2]
    assert loaded["test"]["filename"] == [f"{1000000 + first_id + k}.jpg" for k in (3, 4)]
    row = loaded["test"].cast_column("image", datasets.Image(decode=False))[1]
    assert row["image"]["bytes"] == _png(first_id + 4)
    assert row["captions"] == [f"image {first_id + 4} caption {k}" for k in range(5)]


FLICKR_SPLITS = ["train", "train", "val", "test", "test"]


def test_nlphuji_flickr30k_parquet_copy_converts_offline(offline_sources, monkeypatch):
    src = _nlphuji_folder(offline_sources / "nlphuji", FLICKR_SPLITS)
    monkeypatch.setitem(hub.SOURCES, "flickr30k", (hub.HubSource(str(src)),))
    hub_data = hub.load_hub_dataset("flickr30k")
    assert list(hub_data) == ["test"] and hub_data["test"].features == NLPHUJI_FEATURES
    report = hub.build("flickr30k", offline_sources / "out")  # HF_HUB_OFFLINE is set: a local source needs no hub
    assert report["kept"] == TINY_SIZES and report["left_out"] == []
    _check_flickr_output(offline_sources / "out")


def test_umaru97_flickr30k_copy_converts_offline(offline_sources):
    src = _umaru_folder(offline_sources / "umaru", FLICKR_SPLITS)
    assert sorted(hub.load_hub_dataset("flickr30k", hub.HubSource(str(src)))) == ["test", "train", "val"]
    report = hub.build("flickr30k", offline_sources / "out", source=hub.HubSource(str(src)))
    assert report["kept"] == TINY_SIZES
    _check_flickr_output(offline_sources / "out")


def test_yerevann_coco_karpathy_copy_converts_offline(offline_sources, http_folder):
    images, base = http_folder  # a local folder served over http on 127.0.0.1
    src = offline_sources / "yerevann"
    (src / "data").mkdir(parents=True)
    layout = {"train": ["train"], "validation": ["val"], "test": ["test"], "restval": ["restval", "restval"]}
    imgid = 0
    for hub_split, labels in layout.items():
        rows = []
        for label in labels:
            sub = "train2014" if label == "train" else "val2014"
            name = f"COCO_{sub}_{9000 + imgid:012d}.jpg"
            (images / name).write_bytes(_png(imgid))
            rows.append({"filepath": sub, "sentids": [10 * imgid + k for k in range(6)], "filename": name,
                         "imgid": imgid, "split": label, "sentences": [f"coco {imgid} says {k}" for k in range(6)],
                         "cocoid": 9000 + imgid, "url": f"{base}/{name}"})
            imgid += 1
        part = datasets.Dataset.from_list(rows, features=COCO_FEATURES)
        part.to_parquet(str(src / "data" / f"{hub_split}-00000-of-00001.parquet"))
    out, cache = offline_sources / "out", offline_sources / "cache"
    report = hub.build("coco", out, image_cache=cache, source=hub.HubSource(str(src)))
    assert report["kept"] == {"train": 3, "val": 1, "test": 1} and report["left_out"] == []
    loaded = datasets.load_from_disk(str(out))
    train = dict(zip(loaded["train"]["image_id"], loaded["train"]["filename"]))
    assert train == {0: "train2014/COCO_train2014_000000009000.jpg", 3: "val2014/COCO_val2014_000000009003.jpg",
                     4: "val2014/COCO_val2014_000000009004.jpg"}  # restval merged into train
    assert loaded["val"]["image_id"] == [1] and loaded["test"]["image_id"] == [2]
    assert loaded["test"]["captions"] == [[f"coco 2 says {k}" for k in range(5)]]  # first five of six
    assert (cache / "val2014" / "COCO_val2014_000000009003.jpg").read_bytes() == _png(3)


# ----------------------------------------------------------------------------- falling back on split sizes
def test_a_source_with_wrong_split_sizes_falls_back_to_the_next(offline_sources, monkeypatch):
    monkeypatch.setattr(hub, "require_hub", lambda *a, **k: None)  # test the fallback alone
    wrong = _nlphuji_folder(offline_sources / "first", ["train", "val", "val", "test", "test"])
    right = _umaru_folder(offline_sources / "second", FLICKR_SPLITS, first_id=100)
    monkeypatch.setitem(hub.SOURCES, "flickr30k", (hub.HubSource(str(wrong)), hub.HubSource(str(right))))
    report = hub.build("flickr30k", offline_sources / "out")
    assert report["kept"] == TINY_SIZES
    _check_flickr_output(offline_sources / "out", first_id=100)  # the second source's images


def test_when_every_source_fails_each_is_named_with_its_reason(offline_sources, monkeypatch):
    monkeypatch.setattr(hub, "require_hub", lambda *a, **k: None)  # test the fallback alone
    wrong = _nlphuji_folder(offline_sources / "first", ["train", "val", "val", "test", "test"])
    missing = offline_sources / "nowhere"
    missing.mkdir()
    monkeypatch.setitem(hub.SOURCES, "flickr30k", (hub.HubSource(str(wrong)), hub.HubSource(str(missing))))
    with pytest.raises(DataPrepError) as err:
        hub.build("flickr30k", offline_sources / "out")
    message = str(err.value)
    assert err.value.code == 1 and "\n" not in message and message.startswith("no source of flickr30k could be used")
    assert f"{wrong}: flickr30k split sizes differ from the Karpathy protocol: got train 1, val 2, test 2" in message
    assert f"{missing}: " in message and "pass --ignore-sizes" in message
    assert not (offline_sources / "out").exists()
    report = hub.build("flickr30k", offline_sources / "out", ignore_sizes=True)  # the first that loads
    assert report["kept"] == {"train": 1, "val": 2, "test": 2}
