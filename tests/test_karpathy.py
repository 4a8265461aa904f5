"""Tests of data_prep.karpathy on a hand-made Karpathy split file full of awkward cases."""
import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from data_prep import DataPrepError, to_rgb
from data_prep import karpathy

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
NOISE = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)
LONG = ("A very long caption about a dog " * 70)[:2000]
UNICODE = ["Un garçon à vélo près d'un café", "一只猫坐在窗台上", "A dog 🐕 chasing a ball ⚽ 🎉",
           "  two spaces at both ends  ", LONG]


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _good_images() -> dict:
    """filename -> bytes of images that must be kept, in many modes and shapes."""
    palette = Image.fromarray(NOISE).convert("P")
    palette.info["transparency"] = 0
    return {
        "rgb.jpg": _encode(Image.fromarray(NOISE), "JPEG"),
        "rgb.png": _encode(Image.fromarray(NOISE), "PNG"),
        "gray.png": _encode(Image.fromarray(NOISE).convert("L"), "PNG"),
        "rgba.png": _encode(Image.fromarray(NOISE).convert("RGBA"), "PNG"),
        "la.png": _encode(Image.fromarray(NOISE).convert("LA"), "PNG"),
        "palette.png": _encode(palette, "PNG", transparency=0),
        "cmyk.jpg": _encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"),
        "deep.png": _encode(Image.fromarray(np.full((9, 7), 65535, np.uint16)), "PNG"),
        "bilevel.png": _encode(Image.fromarray(NOISE).convert("1"), "PNG"),
        "thin.png": _encode(Image.new("RGB", (3, 500), (10, 200, 30)), "PNG"),
        "tiny.gif": _encode(Image.new("P", (1, 1)), "GIF"),
        "unicode.jpg": _encode(Image.fromarray(NOISE[::-1]), "JPEG"),
        "few.jpg": _encode(Image.fromarray(NOISE[:, ::-1]), "JPEG"),
    }


# filename -> a word the reported reason must contain
BROKEN = {
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "empty.jpg": "empty file",
    "text.jpg": "not an image",
    "missing.jpg": "missing file",
    "nocaps.jpg": "without captions",
    "blank.jpg": "empty caption",
}


def _captions(name: str) -> list[str]:
    if name == "unicode.jpg":
        return UNICODE
    if name == "few.jpg":
        return ["only one caption"]
    if name == "nocaps.jpg":
        return []
    if name == "blank.jpg":
        return ["fine", "also fine", " \t\u3000 ", "ok", "ok too"]
    return [f"{name} caption {k}" for k in range(5)]


def _entry(i: int, name: str, split: str, caps: list[str], filepath: str | None = None) -> dict:
    e = {"filename": name, "split": split, "imgid": i, "sentids": list(range(5 * i, 5 * i + len(caps))),
         "sentences": [{"raw": c, "tokens": c.lower().split(), "imgid": i, "sentid": 5 * i + k}
                       for k, c in enumerate(caps)]}
    if filepath is not None:
        e["filepath"] = filepath
    return e


@pytest.fixture
def messy(tmp_path):
    """A Karpathy JSON + image folder mixing good, unusual and broken files."""
    root = tmp_path / "images"
    root.mkdir()
    good = _good_images()
    for name, data in good.items():
        (root / name).write_bytes(data)
    (root / "truncated.jpg").write_bytes(good["rgb.jpg"][: len(good["rgb.jpg"]) * 6 // 10])
    (root / "truncated.png").write_bytes(good["rgb.png"][: len(good["rgb.png"]) * 6 // 10])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a picture\n")
    for name in ("nocaps.jpg", "blank.jpg"):
        (root / name).write_bytes(good["rgb.jpg"])
    names = list(good) + list(BROKEN)
    splits = ["train", "val", "test", "restval"]
    images = [_entry(i, n, splits[i % 4], _captions(n)) for i, n in enumerate(names)]
    path = tmp_path / "dataset_test.json"
    path.write_text(json.dumps({"dataset": "test", "images": images}, ensure_ascii=False), encoding="utf-8")
    return path, root, good, images


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_strict_run_writes_nothing_and_names_every_problem(messy, tmp_path):
    path, root, _, _ = messy
    with pytest.raises(karpathy.ProblemsFound) as err:
        karpathy.build(path, root, tmp_path / "out", progress=False)
    message = str(err.value)
    for name, reason in BROKEN.items():
        line = next(line for line in message.splitlines() if name in line)
        assert reason in line, line
    assert len(err.value.report["left_out"]) == len(BROKEN)
    assert _listing(tmp_path) == ["dataset_test.json", "images"]  # no OUT, no temporary folder


def test_skip_bad_keeps_every_good_image_exactly(messy, tmp_path):
    path, root, good, images = messy
    out = tmp_path / "out"
    report = karpathy.build(path, root, out, skip_bad=True, progress=False)
    loaded = datasets.load_from_disk(str(out))
    rows = {}
    for split in ("train", "val", "test"):
        raw = loaded[split].cast_column("image", datasets.Image(decode=False))
        rows.update({r["filename"]: (split, r) for r in raw})
    assert set(rows) == set(good)
    by_name = {e["filename"]: e for e in images}
    for name, (split, row) in rows.items():
        entry = by_name[name]
        assert split == {"restval": "train"}.get(entry["split"], entry["split"])
        assert row["image"]["bytes"] == good[name]  # original bytes, untouched
        assert row["captions"] == [s["raw"] for s in entry["sentences"]][:5]
        assert [c.encode("utf-8") for c in row["captions"]] == [s["raw"].encode("utf-8") for s in entry["sentences"]]
        assert row["image_id"] == entry["imgid"]
    assert rows["unicode.jpg"][1]["captions"] == UNICODE and len(UNICODE[-1]) == 2000
    on_disk = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert on_disk == report
    left = {p["filename"]: " ".join(p["reasons"]) for p in on_disk["left_out"]}
    assert set(left) == set(BROKEN)
    assert all(BROKEN[n] in left[n] for n in BROKEN)
    assert on_disk["images_with_fewer_than_5_captions"] == 1
    assert _listing(tmp_path) == ["dataset_test.json", "images", "out"]


def test_every_kept_image_decodes_to_rgb(messy, tmp_path):
    path, root, good, _ = messy
    karpathy.build(path, root, tmp_path / "out", skip_bad=True, progress=False)
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    for split in loaded.values():
        for row in split:
            img = row["image"]
            rgb = to_rgb(img)
            assert rgb.mode == "RGB" and rgb.size == img.size
            arr = np.asarray(rgb)
            if row["filename"] == "deep.png":
                assert arr.min() == 255  # 16-bit white stays white, not clipped garbage
            if row["filename"] == "cmyk.jpg":
                assert arr[..., 0].mean() > 215 and arr[..., 1:].mean() < 40  # C=0 M=Y=255: red


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_to_rgb_handles_every_mode(mode):
    if mode == "I;16":
        img = Image.fromarray(np.full((4, 5), 65535, np.uint16))
    else:
        img = Image.fromarray(NOISE).convert(mode)
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == img.size
    if mode == "I;16":
        assert np.asarray(out).min() == 255


def test_to_rgb_puts_transparency_on_white():
    img = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_coco_filepath_restval_and_first_five_captions(tmp_path):
    root = tmp_path / "coco"
    for sub in ("train2014", "val2014"):
        (root / sub).mkdir(parents=True)
    data = _encode(Image.fromarray(NOISE), "JPEG")
    caps = [f"caption number {k}" for k in range(7)]
    images = [_entry(0, "COCO_train2014_1.jpg", "train", caps, "train2014"),
              _entry(1, "COCO_val2014_2.jpg", "restval", caps, "val2014"),
              _entry(2, "COCO_val2014_3.jpg", "val", caps, "val2014"),
              _entry(3, "COCO_val2014_4.jpg", "test", caps, "val2014")]
    for e in images:
        (root / e["filepath"] / e["filename"]).write_bytes(data)
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    report = karpathy.build(path, root, tmp_path / "out", progress=False)
    assert report["kept"] == {"train": 2, "val": 1, "test": 1} and report["left_out"] == []
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert sorted(loaded["train"]["filename"]) == ["train2014/COCO_train2014_1.jpg", "val2014/COCO_val2014_2.jpg"]
    assert all(c == caps[:5] for c in loaded["test"]["captions"])


def test_duplicates_are_reported(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    (root / "a.jpg").write_bytes(_encode(Image.fromarray(NOISE), "JPEG"))
    (root / "b.jpg").write_bytes(_encode(Image.fromarray(NOISE), "JPEG"))
    images = [_entry(0, "a.jpg", "train", ["x"] * 5), _entry(1, "a.jpg", "test", ["y"] * 5),
              _entry(1, "b.jpg", "val", ["z"] * 5)]
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"images": images}))
    report = karpathy.build(path, root, tmp_path / "out", skip_bad=True, progress=False)
    reasons = {(p["filename"], p["split"]): p["reasons"] for p in report["left_out"]}
    assert "duplicate filename" in reasons[("a.jpg", "test")][0]
    assert "duplicate imgid 1" in reasons[("b.jpg", "val")][0]
    assert report["kept"] == {"train": 1, "val": 0, "test": 0}


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "data_prep.karpathy", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_strict_fails_and_skip_bad_succeeds(messy, tmp_path):
    path, root, good, _ = messy
    out = tmp_path / "out"
    strict = _cli("--json", str(path), "--image-root", str(root), "--out", str(out))
    assert strict.returncode == 1, strict.stderr
    assert "Traceback" not in strict.stderr and "nothing was written" in strict.stderr
    assert all(name in strict.stderr for name in BROKEN)
    assert not out.exists() and _listing(tmp_path) == ["dataset_test.json", "images"]
    loose = _cli("--json", str(path), "--image-root", str(root), "--out", str(out), "--skip-bad")
    assert loose.returncode == 0, loose.stderr
    assert f"wrote {len(good)} images" in loose.stdout and "left out 7 images" in loose.stdout
    again = _cli("--json", str(path), "--image-root", str(root), "--out", str(out), "--skip-bad")
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    ('{"images": [{"filename": "a.jpg", "imgid": 0, "sentences": []}]}', "missing key 'split'"),
    ('{"images": [{"filename": "a.jpg", "split": "dev", "imgid": 0, "sentences": []}]}', "unknown split 'dev'"),
    ('{"images": [{"filename": "a.jpg", "split": "val", "imgid": 0, "sentences": [{"tokens": []}]}]}',
     "missing key 'raw'"),
    ('{"annotations": []}', "'images' list"),
])
def test_malformed_split_file_gives_one_line_error(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataPrepError, match=words):
        karpathy.build(path, tmp_path, tmp_path / "out", progress=False)
    done = _cli("--json", str(path), "--image-root", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and words in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
