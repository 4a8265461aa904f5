"""Shared pieces of every dataset builder: the on-disk schema, atomic writing, RGB conversion.

Every prepared dataset (synthetic, Karpathy-split Flickr30K/Flickr8K/MSCOCO, hub copies) is a
`datasets.DatasetDict` saved with `save_to_disk`, with splits `train`, `val`, `test`, one row per
image and at least the columns of `BASE_FEATURES`:

- `image`: `datasets.Image()`, PNG/JPEG (or other PIL-readable) bytes;
- `captions`: list of raw caption strings, exactly as written;
- `image_id`: int;
- `filename`: str.

Writing is atomic: a dataset is first written into a hidden temporary folder beside OUT and
renamed into place only when complete, so an interrupted or failed build never leaves a partial
dataset behind.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

import datasets
import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")

# Karpathy-split image counts of the evaluation protocol (train includes COCO's restval).
PROTOCOL_SIZES = {
    "flickr30k": {"train": 29_000, "val": 1_014, "test": 1_000},
    "coco": {"train": 113_287, "val": 5_000, "test": 5_000},
    "flickr8k": {"train": 6_000, "val": 1_000, "test": 1_000},
}

BASE_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "captions": datasets.List(datasets.Value("string")),
        "image_id": datasets.Value("int64"),
        "filename": datasets.Value("string"),
    }
)


class DataPrepError(Exception):
    """An error with a one-line message for the user; `code` is the CLI exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def make_features(extra: dict | None = None) -> datasets.Features:
    """Return the common schema, plus `extra` columns ({name: feature})."""
    return datasets.Features({**BASE_FEATURES, **(extra or {})})


def image_cell(data: bytes) -> dict:
    """Wrap encoded image bytes as a value of a `datasets.Image()` column."""
    return {"bytes": data, "path": None}


def check_out(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing non-empty OUT unless `overwrite`; return OUT as a Path."""
    out = Path(out)
    if out.is_file() and not overwrite:
        raise DataPrepError(f"{out} exists and is a file; pass --overwrite to replace it", 2)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataPrepError(f"{out} exists and is not empty; pass --overwrite to replace it", 2)
    return out


@contextlib.contextmanager
def staging(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a scratch folder beside OUT; on success move `<scratch>/dataset` to OUT.

    On any exception (KeyboardInterrupt included) the scratch folder is removed and OUT is
    left as it was.
    """
    out = check_out(out, overwrite).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield work
        _commit(work / "dataset", out, overwrite, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _commit(src: Path, out: Path, overwrite: bool, work: Path) -> None:
    """Rename the finished `src` to `out`, moving any old `out` into `work` first."""
    if not src.is_dir():
        raise DataPrepError(f"internal error: nothing was staged for {out}")
    check_out(out, overwrite)
    if out.exists() or out.is_symlink():
        os.replace(out, work / f"old-{uuid.uuid4().hex}")
    os.replace(src, out)


def write_dataset(dsdict: datasets.DatasetDict, folder: Path, extra_files: dict | None = None) -> None:
    """Save `dsdict` into `folder` (not atomic) and write `extra_files` ({name: str}) beside it."""
    missing = [s for s in SPLITS if s not in dsdict]
    if missing:
        raise DataPrepError(f"internal error: dataset lacks splits {missing}")
    dsdict.save_to_disk(str(folder))
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text, encoding="utf-8")


def save_dataset(
    dsdict: datasets.DatasetDict,
    out: str | os.PathLike,
    overwrite: bool = False,
    extra_files: dict | None = None,
) -> Path:
    """Atomically write `dsdict` (splits train/val/test) to OUT; return OUT."""
    with staging(out, overwrite) as work:
        write_dataset(dsdict, work / "dataset", extra_files)
    return Path(out)


def dataset_from_rows(rows: Iterable[dict], features: datasets.Features, cache_dir: Path) -> datasets.Dataset:
    """Stream `rows` into an Arrow-backed `datasets.Dataset` cached under `cache_dir`.

    Rows are consumed once, in this process; nothing is held in memory, so this suits
    datasets of many gigabytes.
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:  # from_generator refuses an empty split
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)

    def _gen():
        yield first
        yield from rows

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the caller shows its own bar
    try:
        return datasets.Dataset.from_generator(
            _gen, features=features, cache_dir=str(cache_dir), fingerprint=uuid.uuid4().hex
        )
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def size_mismatch(name: str, sizes: dict) -> str | None:
    """A one-line description of how `sizes` differ from the protocol's for `name`, or None."""
    expected = PROTOCOL_SIZES.get(name)
    if expected is None or dict(sizes) == expected:
        return None
    got = ", ".join(f"{s} {sizes.get(s, 0)}" for s in SPLITS)
    want = ", ".join(f"{s} {expected[s]}" for s in SPLITS)
    return f"{name} split sizes differ from the Karpathy protocol: got {got}; expected {want}"


def folder_size(path: str | os.PathLike) -> int:
    """Total size in bytes of the files under `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def to_rgb(img: Image.Image, background: tuple = (255, 255, 255)) -> Image.Image:
    """Convert any PIL image to 8-bit RGB: 16/32-bit greyscale rescaled, alpha over `background`.

    Handles `1`, `L`, `P` (with or without transparency), `LA`, `RGBA`, `CMYK`, `I;16*`, `I`, `F`,
    `YCbCr` and friends.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _high_depth_to_rgb(img)
    if img.mode == "P" and "transparency" in img.info or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        canvas = Image.new("RGB", img.size, background)
        canvas.paste(img, mask=img.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Rescale a 16/32-bit integer or float greyscale image to 8-bit RGB."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        arr = arr / 257.0
    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def run_cli(main: Callable[[], None]) -> None:
    """Run a CLI entry point: one-line errors on stderr and exit codes instead of tracebacks."""
    try:
        main()
    except DataPrepError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.code)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(0)
