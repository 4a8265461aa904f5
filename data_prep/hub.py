"""Flickr30K and MSCOCO (Karpathy splits) from the Hugging Face hub, when online.

What: downloads a maintained parquet copy of the dataset (loading scripts no longer run in
current `datasets`) and converts it to hat_min's on-disk format (see `data_prep/_common.py`),
checking the split sizes of the paper's protocol (Flickr30K 29,000/1,014/1,000;
MSCOCO 113,287/5,000/5,000 with restval merged into train).

Sources (tried in order; `--repo/--config/--revision` pick another copy with a similar schema):
- flickr30k: `nlphuji/flickr30k` (its auto-converted parquet branch; one hub split holding all
  31,783 images, the Karpathy split in a `split` column), then
  `umaru97/flickr30k_train_val_test` (parquet, the same columns in three splits);
- coco: `yerevann/coco-karpathy` (parquet, captions in `sentences`, images as `url`s only): the
  images are downloaded from images.cocodataset.org into `--image-cache` (resumable: finished
  files are kept, partial `.part` files are continued with HTTP range requests), a Karpathy
  JSON is written next to them and `data_prep.karpathy` builds OUT (checking every image).
  Before any download every row is checked: its destination (`filepath`/`filename`, as written:
  no `..` out, no absolute path) must lie inside the image cache and its URL must be http or https;
  a row that fails stops the build with one line naming it (exit code 1).

A source that loads but whose split sizes differ from the protocol is skipped for the next one
(unless `--ignore-sizes`); when no source works, one line lists each source and why, exit code 1.

Offline (HF_HUB_OFFLINE=1, or no TCP connection to huggingface.co:443 within 3 s) it stops at
once with one sentence that names the offline alternative, exit code 2. `--repo` may also name a
local folder holding a copy of a source's files (e.g. its parquet files as on the hub, read by
`datasets.load_dataset(folder)`); the hub is then not contacted for it (COCO images still are).

Run:
    python -m data_prep.hub --dataset flickr30k --out data/f30k
    python -m data_prep.hub --dataset coco --out data/coco --image-cache /big/disk/coco2014
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import datasets
from tqdm.auto import tqdm

from data_prep import karpathy
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
from data_prep._write import check_creatable, check_out, staging, write_dataset

OFFLINE_HINT = "python -m data_prep.synthetic --out DIR"
SPLIT_OF = {**karpathy.SPLIT_OF, "validation": "val", "dev": "val"}
_CAPTION_COLUMNS = ("captions", "caption", "sentences", "alt_text", "raw")
_ID_COLUMNS = ("imgid", "img_id", "image_id", "cocoid", "id")
URL_SCHEMES = ("http", "https")  # what images are downloaded with; file:, ftp:, data: ... are refused


@dataclass(frozen=True)
class HubSource:
    """Where a dataset lives on the hub."""

    repo: str  # a hub id, or a local folder with the same files
    config: str | None = None
    revision: str | None = None

    @property
    def local(self) -> bool:
        """Whether `repo` is a local folder (`datasets.load_dataset` then reads it, offline)."""
        return Path(self.repo).is_dir()

    def __str__(self) -> str:
        return self.repo + (f" ({self.config})" if self.config else "") + (f"@{self.revision}" if self.revision else "")


SOURCES = {
    "flickr30k": (HubSource("nlphuji/flickr30k", revision="refs/convert/parquet"),
                  HubSource("umaru97/flickr30k_train_val_test")),
    "coco": (HubSource("yerevann/coco-karpathy"),),
}


class HubUnreachable(DataPrepError):
    """The hub cannot be reached; the message names the offline alternative."""

    def __init__(self, why: str):
        super().__init__(f"the Hugging Face hub is unreachable ({why}), so nothing was downloaded; "
                         f"build the offline synthetic dataset instead with: {OFFLINE_HINT}", 2)


# ----------------------------------------------------------------------------- reachability
def offline_reason(timeout: float = 3.0, flags: tuple[str, ...] = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")) -> str | None:
    """Why the hub is unreachable (one of the offline ``flags`` set, or no TCP connection), or None if reachable.

    The one probe of the repository: the dataset builders ask it, and so do ``hat_min.encoders`` (with the
    flags of the model libraries) and ``hat_min.tutorial.profiles``. Behind ``HTTPS_PROXY`` the proxy is probed.
    """
    for var in flags:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    # behind a proxy, reaching the proxy is what counts
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"cannot connect to {host}:{port}: {err.strerror or type(err).__name__}"
    return None


def require_hub(timeout: float = 3.0) -> None:
    """Raise HubUnreachable (exit code 2) unless the hub answers."""
    why = offline_reason(timeout)
    if why:
        raise HubUnreachable(why)


def _first_line(err: BaseException) -> str:
    """`TypeName: first line of the message` of an exception."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def hub_sizes(hub: datasets.DatasetDict) -> dict[str, int]:
    """Images per split (train/val/test, restval counted in train) of loaded hub data."""
    return {s: len(v) for s, v in split_indices(hub).items()}


def load_hub_dataset(name: str, source: HubSource | None = None, ignore_sizes: bool = False) -> datasets.DatasetDict:
    """Load the first source of `name` (or `source`) that loads and has the protocol's split sizes.

    A source that fails to load, has an unknown split, or (unless `ignore_sizes`) has other split
    sizes is skipped; when none is left, one DataPrepError line lists each source and why.
    """
    errors, sized = [], False
    for src in (source,) if source else SOURCES[name]:
        try:
            hub = datasets.load_dataset(src.repo, src.config, revision=src.revision)
            problem = size_mismatch(name, hub_sizes(hub))
        except Exception as err:  # network, missing repo, schema: try the next copy
            errors.append(f"{src}: {_first_line(err)}")
            continue
        if problem and not ignore_sizes:
            errors.append(f"{src}: {problem}")
            sized = True
            continue
        return hub
    hint = "; pass --ignore-sizes to convert anyway" if sized else ""
    raise DataPrepError(f"no source of {name} could be used ({' | '.join(errors)}){hint}", 1)


# ----------------------------------------------------------------------------- schema mapping
def _column(ds: datasets.Dataset, options: tuple) -> str:
    """The first of `options` that `ds` has as a column."""
    for name in options:
        if name in ds.column_names:
            return name
    raise DataPrepError(f"hub data has none of the columns {options} (it has {ds.column_names})")


def _caption_list(value) -> list[str]:
    """Raw captions from a hub cell: a str, a list of str, or a list of {"raw": str}."""
    if isinstance(value, str):
        return [value]
    return [v["raw"] if isinstance(v, dict) else v for v in value or []]


def _as_int(value, column: str) -> int:
    """`value` as an int, or a one-line error naming the column."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataPrepError(f"hub column {column!r} holds {value!r}, not an integer id") from None


def _split_of(name: str) -> str:
    """Our split name for a hub split / split-column value."""
    if name not in SPLIT_OF:
        raise DataPrepError(f"unknown split {name!r} in hub data (expected one of {', '.join(SPLIT_OF)})")
    return SPLIT_OF[name]


def split_indices(hub: datasets.DatasetDict) -> dict[str, list[tuple[str, int]]]:
    """(hub split, row) positions of each of our splits, read from a `split` column if any."""
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for hub_split, ds in hub.items():
        labels = ds["split"] if "split" in ds.column_names else [hub_split] * len(ds)
        for i, label in enumerate(labels):
            out[_split_of(label)].append((hub_split, i))
    return out


def check_sizes(name: str, sizes: dict, ignore: bool = False) -> None:
    """Stop (or only warn, with `ignore`) when split sizes differ from the protocol."""
    problem = size_mismatch(name, sizes)
    if problem and not ignore:
        raise DataPrepError(f"{problem}; pass --ignore-sizes to convert anyway")
    if problem:
        print(f"warning: {problem}")


# ----------------------------------------------------------------------------- embedded images
def _hub_row(row: dict, image_col: str, caption_col: str, id_col: str) -> tuple[dict, list[str]]:
    """Our row from a hub row with an embedded image, plus its problems."""
    cell = row[image_col] or {}
    data = cell.get("bytes") or (Path(cell["path"]).read_bytes() if cell.get("path") else b"")
    captions = _caption_list(row[caption_col])
    name = row.get("filename") or str(row[id_col])
    if row.get("filepath"):
        name = f"{row['filepath']}/{name}"
    problems = karpathy.caption_problems(captions)
    reason = karpathy.image_problem(data)
    new = {"image": image_cell(data), "captions": captions[: karpathy.MAX_CAPTIONS],
           "image_id": _as_int(row[id_col], id_col), "filename": name}
    return new, problems + ([reason] if reason else [])


def _rows(hub: datasets.DatasetDict, where: list[tuple[str, int]], left_out: list, bar):
    """Yield our rows for the given (hub split, index) positions; record bad ones in `left_out`."""
    for hub_split in hub:
        idx = [i for s, i in where if s == hub_split]
        if not idx:
            continue
        ds = hub[hub_split].select(idx, keep_in_memory=True)
        image_col = _column(ds, ("image", "jpg", "img"))
        ds = ds.cast_column(image_col, datasets.Image(decode=False))
        cols = (image_col, _column(ds, _CAPTION_COLUMNS), _column(ds, _ID_COLUMNS))
        for row in ds:
            new, problems = _hub_row(row, *cols)
            bar.update()
            if problems:
                left_out.append({"filename": new["filename"], "image_id": new["image_id"],
                                 "reasons": problems})
            else:
                yield new


def convert(
    hub: datasets.DatasetDict, out: str | Path, name: str = "flickr30k", skip_bad: bool = False,
    overwrite: bool = False, ignore_sizes: bool = False, progress: bool = True,
) -> dict:
    """Convert hub data with embedded images (e.g. nlphuji/flickr30k) to OUT; return a report."""
    check_out(out, overwrite)
    where = split_indices(hub)
    check_sizes(name, {s: len(v) for s, v in where.items()}, ignore_sizes)
    left_out: list[dict] = []
    with staging(out, overwrite) as work:
        with tqdm(total=sum(map(len, where.values())), desc=f"converting {name}", unit="img",
                  disable=not progress) as bar:
            splits = {s: dataset_from_rows(_rows(hub, where[s], left_out, bar), BASE_FEATURES, work / "cache")
                      for s in SPLITS}
        kept = {s: len(d) for s, d in splits.items()}
        report = {"source": name, "kept": kept, "empty_splits": empty_splits(kept), "left_out": left_out}
        if left_out and not skip_bad:
            lines = "\n".join(f"  {p['filename']}: {'; '.join(p['reasons'])}" for p in left_out)
            raise DataPrepError(f"{len(left_out)} images have problems; nothing was written "
                                f"(pass --skip-bad to leave them out):\n{lines}")
        report_json = json.dumps(report, indent=1, ensure_ascii=False)
        write_dataset(datasets.DatasetDict(splits), work / "dataset", {"report.json": report_json}, "data_prep.hub")
    return report


# ----------------------------------------------------------------------------- images by URL (COCO)
def karpathy_json(hub: datasets.DatasetDict) -> dict:
    """A Karpathy-format split file (with each image's `url`) from URL-only hub data."""
    images = []
    for hub_split, ds in hub.items():
        cap_col, id_col = _column(ds, _CAPTION_COLUMNS), _column(ds, _ID_COLUMNS)
        keep = [c for c in ("filename", "filepath", "url", "split", cap_col, id_col) if c in ds.column_names]
        for row in ds.select_columns(keep):
            images.append({
                "filename": row["filename"], "filepath": row.get("filepath") or "", "url": row["url"],
                "split": _split_of(row.get("split") or hub_split), "imgid": _as_int(row[id_col], id_col),
                "sentences": [{"raw": c} for c in _caption_list(row[cap_col])],
            })
    return {"dataset": "coco", "images": images}


def _fetch(url: str, dest: Path, timeout: float = 30.0, retries: int = 3) -> str | None:
    """Download `url` to `dest`, continuing a partial `.part` file; return an error or None."""
    if dest.is_file() and dest.stat().st_size > 0:
        return None  # done in an earlier run
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    error = None
    for _ in range(retries):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                resumed = have and getattr(resp, "status", 200) == 206
                with open(part, "ab" if resumed else "wb") as f:
                    while chunk := resp.read(1 << 16):
                        f.write(chunk)
            os.replace(part, dest)
            return None
        except (urllib.error.URLError, OSError) as err:
            error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    return error


def download_jobs(split_file: dict, cache: Path) -> list[tuple[str, Path]]:
    """(url, destination) of every image of a `karpathy_json` file; refuse a row that leaves `cache`
    or whose URL is not http(s), with one line naming it."""
    jobs = []
    for img in split_file["images"]:
        name, sub, url = img["filename"], img["filepath"], str(img["url"] or "")
        where = f"hub row imgid {img['imgid']} ({sub!r}, {name!r})"
        scheme = urlparse(url).scheme
        if scheme not in URL_SCHEMES:
            shown = url if len(url) <= 100 else url[:97] + "..."
            raise DataPrepError(f"{where}: URL scheme {scheme!r} refused ({shown}); only "
                                f"{' and '.join(URL_SCHEMES)} URLs are downloaded")
        if not isinstance(name, str) or not name:
            raise DataPrepError(f"{where}: no filename")
        dest = cache / sub / name
        if not stays_inside(dest, cache) or os.path.abspath(dest) == os.path.abspath(cache):
            raise DataPrepError(f"{where}: its download destination {dest} is outside the image cache {cache}")
        jobs.append((url, dest))
    return jobs


def download_images(jobs: list[tuple[str, Path]], workers: int = 16, progress: bool = True) -> dict[str, str]:
    """Fetch (url, destination) pairs in parallel, resumably; return {url: error} of failures."""
    failures = {}
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(jobs), desc="downloading images", unit="img", disable=not progress) as bar:
        for (url, _), err in zip(jobs, pool.map(lambda job: _fetch(*job), jobs)):
            bar.update()
            if err:
                failures[url] = err
    return failures


def build_coco(
    hub: datasets.DatasetDict, out: str | Path, image_cache: str | Path, skip_bad: bool = False,
    overwrite: bool = False, ignore_sizes: bool = False, workers: int = 16,
) -> dict:
    """Download COCO images listed by URL into `image_cache`, then build OUT with data_prep.karpathy."""
    check_out(out, overwrite, {"image cache": image_cache})
    check_creatable(image_cache)
    split_file = karpathy_json(hub)
    counts = {s: 0 for s in SPLITS}
    for img in split_file["images"]:
        counts[img["split"]] += 1
    check_sizes("coco", counts, ignore_sizes)
    jobs = download_jobs(split_file, Path(image_cache))
    failures = download_images(jobs, workers)
    if failures:
        url, err = next(iter(failures.items()))
        print(f"warning: {len(failures)} downloads failed (run again to resume), e.g. {url}: {err}")
    json_path = Path(image_cache) / "dataset_coco.json"
    json_path.write_text(json.dumps(split_file), encoding="utf-8")
    return karpathy.build(json_path, image_cache, out, skip_bad=skip_bad, overwrite=overwrite)


# ----------------------------------------------------------------------------- entry points
def build(
    dataset: str, out: str | Path, skip_bad: bool = False, overwrite: bool = False,
    ignore_sizes: bool = False, image_cache: str | Path | None = None, source: HubSource | None = None,
    timeout: float = 3.0,
) -> dict:
    """Fetch `dataset` ('flickr30k' or 'coco') from the hub and write OUT; return the report."""
    if dataset not in SOURCES:
        raise DataPrepError(f"unknown dataset {dataset!r} (choose from {', '.join(SOURCES)})", 2)
    if not all(src.local for src in ((source,) if source else SOURCES[dataset])):
        require_hub(timeout)
    default_root = Path(os.environ.get("HAT_MIN_CACHE", Path.home() / ".cache" / "hat_min"))
    cache = image_cache or default_root / "coco2014"
    check_out(out, overwrite, {"image cache": cache} if dataset == "coco" else None)
    if dataset == "coco":
        check_creatable(cache)
    hub = load_hub_dataset(dataset, source, ignore_sizes)
    if dataset == "coco":
        return build_coco(hub, out, cache, skip_bad, overwrite, ignore_sizes)
    return convert(hub, out, dataset, skip_bad, overwrite, ignore_sizes)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m data_prep.hub", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(SOURCES))
    p.add_argument("--out", required=True, help="output folder (a datasets.DatasetDict)")
    p.add_argument("--image-cache", help="COCO only: where downloaded images are kept (resumable)")
    p.add_argument("--repo", help="use this hub dataset instead of the default copies")
    p.add_argument("--config", help="hub config name (with --repo)")
    p.add_argument("--revision", help="hub revision, e.g. refs/convert/parquet (with --repo)")
    p.add_argument("--skip-bad", action="store_true", help="leave broken images out (listed in report.json)")
    p.add_argument("--ignore-sizes", action="store_true",
                   help="only warn when split sizes differ from the protocol")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """CLI: fetch, convert, print a one-line summary."""
    a = _parse_args(argv)
    start = time.perf_counter()
    source = HubSource(a.repo, a.config, a.revision) if a.repo else None
    report = build(a.dataset, a.out, a.skip_bad, a.overwrite, a.ignore_sizes, a.image_cache, source)
    kept = report["kept"]
    if report["left_out"]:
        print(f"left out {len(report['left_out'])} images (listed in {Path(a.out) / 'report.json'})")
    if empty_splits_warning(kept):
        print(f"warning: {empty_splits_warning(kept)}")
    print(f"wrote {sum(kept.values())} images (train {kept['train']}, val {kept['val']}, "
          f"test {kept['test']}) "
          f"to {a.out} in {time.perf_counter() - start:.1f} s, {folder_size(a.out) / 1e6:.1f} MB")


if __name__ == "__main__":
    run_cli(main)
