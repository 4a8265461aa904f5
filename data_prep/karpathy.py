"""Real retrieval datasets (Flickr30K, Flickr8K, MSCOCO) from a Karpathy split file.

What: converts `dataset_flickr30k.json` / `dataset_flickr8k.json` / `dataset_coco.json` (Karpathy &
Fei-Fei 2015, the splits of the paper's protocol: Flickr30K 29,000/1,014/1,000 images, MSCOCO
113,287/5,000/5,000) plus the folder of images into hat_min's on-disk format (see
`data_prep/_common.py`): splits train/val/test, one row per image, columns image (the original
file bytes), captions, image_id (= Karpathy `imgid`), filename (path relative to the image root).

Run:
    python -m data_prep.karpathy --json dataset_flickr30k.json --image-root flickr30k-images --out data/f30k
    python -m data_prep.karpathy --json dataset_coco.json --image-root coco --out data/coco --skip-bad

Rules, decided here once:
- splits: `restval` is merged into train (the usual COCO practice; the released HAT code left it out);
- images are found at IMAGE_ROOT/filename, or IMAGE_ROOT/filepath/filename when an entry has a
  `filepath` (COCO: train2014/ or val2014/); an entry whose path resolves outside IMAGE_ROOT
  (`..`, an absolute path) is a problem and is never opened; symbolic links under IMAGE_ROOT
  are the user's own and are followed (a folder of images on another disk);
- captions: the first five `raw` sentences, unicode kept exactly as written (no normalisation,
  no stripping). COCO images with 6-7 captions keep the first five. An image with 1-4 captions is
  kept with what it has (a warning counts them; none occur in the three official files);
- the original file bytes are stored, untouched (lossless, any format/colour mode PIL can
  decode; `datasets.Image` decodes them back). Colour modes such as L, LA, RGBA, P, CMYK, I;16
  or 1-bit are NOT problems: convert at load time with `data_prep.to_rgb`. EXIF orientation
  is not applied (as in the usual pipelines);
- every image is decoded FULLY (`Image.open(...).load()`): a file can open and still be truncated.

Problems, all reported in ONE pass, each with the file name and reason: outside the image
root, missing file, empty file, not an image, unreadable or truncated image, image without
captions, empty (whitespace-only) caption among the kept ones, duplicate filename or imgid (the first
occurrence is kept). By default any problem means NOTHING is written and the exit code is 1;
with `--skip-bad` the good images are written and OUT/report.json lists every left-out file
with its reasons (report.json is written in both modes). A malformed split file (bad JSON,
missing keys, unknown split) or a bad command line stops at once with a one-line error and
exit code 2.

A split with no images (e.g. a file that lists only test images) is written as an empty split
with the full schema (it loads; `report.json` lists it under `empty_splits` and the summary
warns). OUT is replaced (`--overwrite`) only when it is a dataset folder a builder wrote, and
never when it is or contains IMAGE_ROOT or the split file (see `data_prep/_write.py`).
"""
from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm.auto import tqdm

from data_prep._common import (
    BASE_FEATURES,
    SPLITS,
    DataPrepError,
    dataset_from_rows,
    empty_splits,
    empty_splits_warning,
    folder_size,
    image_cell,
    run_cli,
    size_mismatch,
    stays_inside,
)
from data_prep._write import check_out, staging, write_dataset

SPLIT_OF = {"train": "train", "restval": "train", "val": "val", "test": "test"}
MAX_CAPTIONS = 5
OUTSIDE_ROOT = "outside the image root"


@dataclass
class Entry:
    """One image of a Karpathy split file."""

    index: int  # position in the file's "images" list
    relpath: str  # filepath/filename (COCO) or filename
    split: str  # train / val / test (restval already merged)
    imgid: int
    captions: list[str]  # every raw sentence, as written
    problems: list[str] = field(default_factory=list)


class ProblemsFound(DataPrepError):
    """Strict mode found broken entries; `report` lists them."""

    def __init__(self, message: str, report: dict):
        super().__init__(message, 1)
        self.report = report


# ----------------------------------------------------------------------------- reading the JSON
def _require(obj: dict, key: str, kind: type, where: str):
    """obj[key], checked to exist and to be of `kind`; else a one-line DataPrepError."""
    if key not in obj:
        raise DataPrepError(f"{where}: missing key {key!r}", 2)
    if not isinstance(obj[key], kind) or (kind is int and isinstance(obj[key], bool)):
        raise DataPrepError(f"{where}: {key!r} should be {kind.__name__}, not {type(obj[key]).__name__}", 2)
    return obj[key]


def _parse_entry(i: int, item, path: Path) -> Entry:
    """Validate one element of "images" and turn it into an Entry."""
    where = f"{path}: images[{i}]"
    if not isinstance(item, dict):
        raise DataPrepError(f"{where}: expected an object, not {type(item).__name__}", 2)
    name = _require(item, "filename", str, where)
    where += f" ({name})"
    split = _require(item, "split", str, where)
    if split not in SPLIT_OF:
        raise DataPrepError(f"{where}: unknown split {split!r} (expected one of {', '.join(SPLIT_OF)})", 2)
    sub = item.get("filepath", "")
    if not isinstance(sub, str):
        raise DataPrepError(f"{where}: 'filepath' should be str", 2)
    sentences = _require(item, "sentences", list, where)
    raws = []
    for k, sent in enumerate(sentences):
        if not isinstance(sent, dict):
            raise DataPrepError(f"{where}: sentences[{k}] should be an object", 2)
        raws.append(_require(sent, "raw", str, f"{where}: sentences[{k}]"))
    relpath = f"{sub.strip('/')}/{name}" if sub else name
    return Entry(i, relpath, SPLIT_OF[split], _require(item, "imgid", int, where), raws)


def read_split_file(path: str | Path) -> tuple[str | None, list[Entry]]:
    """Read and validate a Karpathy JSON: (its "dataset" name, entries); duplicates become problems."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataPrepError(f"split file not found: {path}", 2) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataPrepError(f"{path} is not valid JSON ({err})", 2) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataPrepError(f"{path}: expected an object with an 'images' list (Karpathy format)", 2)
    if not data["images"]:
        raise DataPrepError(f"{path}: 'images' is empty", 2)
    entries = [_parse_entry(i, item, path) for i, item in enumerate(data["images"])]
    _mark_duplicates(entries)
    name = data.get("dataset")
    return (name if isinstance(name, str) else None), entries


def _mark_duplicates(entries: list[Entry]) -> None:
    """Flag every repeat of a filename or imgid (the first occurrence stays good)."""
    first_name: dict[str, int] = {}
    first_id: dict[int, int] = {}
    for e in entries:
        if e.relpath in first_name:
            e.problems.append(f"duplicate filename (also images[{first_name[e.relpath]}])")
        if e.imgid in first_id:
            e.problems.append(f"duplicate imgid {e.imgid} (also images[{first_id[e.imgid]}])")
        first_name.setdefault(e.relpath, e.index)
        first_id.setdefault(e.imgid, e.index)


# ----------------------------------------------------------------------------- checking
def caption_problems(captions: list[str]) -> list[str]:
    """Reasons the captions of one image are unusable (none: an empty list)."""
    if not captions:
        return ["image without captions"]
    kept = captions[:MAX_CAPTIONS]
    return [f"empty caption (sentence {k} is blank)" for k, c in enumerate(kept) if not c.strip()]


def image_problem(data: bytes) -> str | None:
    """Why `data` is not a fully decodable image, or None when it is fine."""
    if not data:
        return "empty file"
    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False  # whoever set it
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decodes every pixel: catches truncated files that open fine
    except UnidentifiedImageError:
        return "not an image (PIL cannot identify the format)"
    except Image.DecompressionBombError as err:
        return f"image too large ({err})"
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
        return f"unreadable or truncated image ({type(err).__name__}: {err})"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    return None


def _read(path: Path) -> tuple[bytes | None, str | None]:
    """(file bytes, None) or (None, reason the file cannot be read)."""
    if not path.is_file():
        return None, "missing file" if not path.exists() else "not a regular file"
    try:
        return path.read_bytes(), None
    except OSError as err:
        return None, f"cannot read file ({err.strerror or err})"


def check_entry(entry: Entry, image_root: Path) -> tuple[bytes | None, list[str]]:
    """Read and fully check one entry; return (image bytes, problems)."""
    problems = entry.problems + caption_problems(entry.captions)
    if not stays_inside(entry.relpath, image_root):
        return None, problems + [OUTSIDE_ROOT]  # never opened
    data, reason = _read(image_root / entry.relpath)
    if reason is None:
        reason = image_problem(data)
    return data, problems + ([reason] if reason else [])


# ----------------------------------------------------------------------------- building
class _Scan:
    """One pass over the entries: yields good rows, records problems."""

    def __init__(self, image_root: Path, keep_going: bool, bar):
        self.root, self.keep_going, self.bar = image_root, keep_going, bar
        self.left_out: list[dict] = []
        self.few_captions = 0

    def rows(self, entries: list[Entry]):
        """Yield dataset rows of the good entries (all of them while no problem was seen)."""
        for e in entries:
            data, problems = check_entry(e, self.root)
            self.bar.update()
            if problems:
                self.left_out.append({"filename": e.relpath, "split": e.split, "imgid": e.imgid,
                                      "reasons": problems})
                continue
            self.few_captions += len(e.captions) < MAX_CAPTIONS
            if self.keep_going or not self.left_out:  # strict mode stops writing at the first problem
                yield {"image": image_cell(data), "captions": e.captions[:MAX_CAPTIONS], "image_id": e.imgid,
                       "filename": e.relpath}


def _report(args: dict, kept: dict, scan: _Scan) -> dict:
    """The report.json content."""
    return {"source": args, "kept": kept, "empty_splits": empty_splits(kept),
            "images_with_fewer_than_5_captions": scan.few_captions, "left_out": scan.left_out}


def _problem_lines(left_out: list[dict]) -> str:
    """One line per left-out file: 'name (split, imgid): reason; reason'."""
    return "\n".join(f"  {p['filename']} ({p['split']}, imgid {p['imgid']}): {'; '.join(p['reasons'])}"
                     for p in left_out)


def build(
    json_path: str | Path, image_root: str | Path, out: str | Path, skip_bad: bool = False,
    overwrite: bool = False, progress: bool = True,
) -> dict:
    """Convert a Karpathy split file + image folder into OUT; return the report (see module doc)."""
    inputs = {"image root": image_root, "split file": json_path}
    check_out(out, overwrite, inputs)
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise DataPrepError(f"image root is not a folder: {image_root}", 2)
    name, entries = read_split_file(json_path)
    args = {"json": str(json_path), "image_root": str(image_root), "dataset": name}
    with staging(out, overwrite, inputs) as work:
        with tqdm(total=len(entries), desc="checking images", unit="img", disable=not progress) as bar:
            scan = _Scan(image_root, skip_bad, bar)
            splits = {s: dataset_from_rows(scan.rows([e for e in entries if e.split == s]), BASE_FEATURES,
                                           work / "cache") for s in SPLITS}
        report = _report(args, {s: len(d) for s, d in splits.items()}, scan)
        if scan.left_out and not skip_bad:
            raise ProblemsFound(f"{len(scan.left_out)} of {len(entries)} images have problems; nothing "
                                f"was written (pass --skip-bad to leave them out):\n"
                                f"{_problem_lines(scan.left_out)}", report)
        write_dataset(datasets.DatasetDict(splits), work / "dataset",
                      {"report.json": json.dumps(report, indent=1, ensure_ascii=False)}, builder="data_prep.karpathy")
    return report


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m data_prep.karpathy", description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="Karpathy split file, e.g. dataset_flickr30k.json")
    p.add_argument("--image-root", required=True,
                   help="folder holding the images (COCO: the folder holding train2014/ and val2014/)")
    p.add_argument("--out", required=True, help="output folder (a datasets.DatasetDict)")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave broken images out and list them in OUT/report.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """CLI: convert, print problems (if any) and a one-line summary."""
    a = _parse_args(argv)
    start = time.perf_counter()
    report = build(a.json, a.image_root, a.out, skip_bad=a.skip_bad, overwrite=a.overwrite)
    if report["left_out"]:
        print(f"left out {len(report['left_out'])} images (listed in {Path(a.out) / 'report.json'}):")
        print(_problem_lines(report["left_out"]))
    if report["images_with_fewer_than_5_captions"]:
        few = report["images_with_fewer_than_5_captions"]
        print(f"warning: {few} images have fewer than 5 captions (kept)")
    for warning in (size_mismatch(report["source"]["dataset"] or "", report["kept"]),
                    empty_splits_warning(report["kept"])):
        if warning:
            print(f"warning: {warning}")
    kept = report["kept"]
    print(f"wrote {sum(kept.values())} images (train {kept['train']}, val {kept['val']}, "
          f"test {kept['test']}) "
          f"to {a.out} in {time.perf_counter() - start:.1f} s, {folder_size(a.out) / 1e6:.1f} MB")


if __name__ == "__main__":
    run_cli(main)
