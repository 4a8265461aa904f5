"""Shared pieces of every dataset builder: the on-disk schema, errors, row building, RGB conversion.

Every prepared dataset (synthetic, Karpathy-split Flickr30K/Flickr8K/MSCOCO, hub copies) is a
`datasets.DatasetDict` saved with `save_to_disk`, with splits `train`, `val`, `test`, one row per
image and at least the columns of `BASE_FEATURES`:

- `image`: `datasets.Image()`, PNG/JPEG (or other PIL-readable) bytes;
- `captions`: list of raw caption strings, exactly as written;
- `image_id`: int;
- `filename`: str.

Writing a dataset (atomic, loaded back, marked; which OUT may be replaced) is `data_prep/_write.py`.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterable

import datasets
import numpy as np
from PIL import Image

from data_prep.splits import GENERALISATION_SPLITS, PHRASING_SPLITS, SPLITS, UNSEEN_SPLIT  # noqa: F401

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


def empty_splits(sizes: dict) -> list[str]:
    """The splits of `sizes` ({split: rows}) that have no rows, in train/val/test order."""
    return [s for s in SPLITS if s in sizes and not sizes[s]]


def empty_splits_warning(sizes: dict) -> str | None:
    """A one-line warning naming the empty splits of `sizes`, or None."""
    empty = empty_splits(sizes)
    if not empty:
        return None
    need = " (training needs a train split)" if "train" in empty else ""
    return f"split{'s' if len(empty) > 1 else ''} {', '.join(empty)} {'are' if len(empty) > 1 else 'is'} empty, " \
           f"written as empty split{'s' if len(empty) > 1 else ''}{need}"


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


def resolves_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` is `folder` or lies below it once both are resolved (`..` and symbolic links followed)."""
    try:
        path, folder = Path(path).resolve(), Path(folder).resolve()
    except (OSError, ValueError, RuntimeError):  # a null byte, a loop of symbolic links
        return False
    return path == folder or folder in path.parents


def stays_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` (relative to `folder`, or absolute) names `folder` or a place below it, read as written:
    `..` steps and absolute paths count, symbolic links are not followed (they are the user's own, on
    disk; this check is for paths taken from a file or a hub's metadata)."""
    folder = os.path.abspath(folder)
    where = os.path.abspath(os.path.join(folder, path))
    return where == folder or where.startswith(folder.rstrip(os.sep) + os.sep)


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
