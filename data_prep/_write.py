"""Writing a dataset: into a staging folder, loaded back, marked, renamed into place; and which OUT may be replaced.

Writing is atomic: a dataset is first written into a hidden staging folder `.OUT.tmp-*` beside
OUT, loaded back (`datasets.load_from_disk`, every split's row count and features checked) and
renamed into place only then, so an interrupted or failed build never leaves a partial dataset
behind. An empty split is saved as one empty shard with the full schema, so it loads (as a
`Dataset` of 0 rows); `save_to_disk`'s default writes no shard at all and the whole
`DatasetDict` then fails to load. A staging folder holds `owner.pid` ("PID HOSTNAME"), written
by the build that created it; one left by a killed run (SIGKILL, power loss) is removed by the
next build of the same OUT when that pid is dead on this host. Nothing is removed by its name
alone: a `.OUT.tmp-*` folder without `owner.pid` (a user's, or one still being created), and the
folders of other OUT names, of live builds and of other hosts are left alone.

OUT is replaced (`--overwrite`) only when it is a dataset folder a builder wrote, recognised by
`not_a_dataset`: `dataset_dict.json` listing splits among train/val/test, one folder per split
holding only `datasets` files (`*.arrow`, `state.json`, `dataset_info.json`, `tmp*`), and at
top level nothing else but the marker `hat_min_dataset.json` (written last by every builder:
format, builder, rows per split, extra files) and the builders' extra files (`report.json`,
`synthetic.json`, any named by the marker). Folders written before the marker existed are
recognised by that exact shape alone; a marker does not excuse anything else in the folder.
Anything else (a file, a symbolic link, a folder holding other files) is refused with one line
and exit code 2, with or without `--overwrite`, as is an OUT that is or contains one of the
build's inputs (image root, split file), and an OUT that cannot be created (below a regular file,
or in a folder that is not writable). An empty or missing OUT is always fine. All of this is
checked before the work (rendering, reading images, downloading) begins.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import datasets

from data_prep._common import GENERALISATION_SPLITS, SPLITS, DataPrepError, empty_splits, resolves_inside

MARKER = "hat_min_dataset.json"
MARKER_FORMAT = "hat_min dataset"
KNOWN_EXTRA_FILES = ("report.json", "synthetic.json")
_SPLIT_FILE = re.compile(r"[\w.-]+\.arrow|state\.json|dataset_info\.json|tmp\w+")
_OWNER = "owner.pid"


def _marker(folder: Path) -> dict | None:
    """The content of `folder`'s marker file, or None when it has none (or not a valid one)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def _split_names(folder: Path) -> list[str] | str:
    """The splits listed by `folder/dataset_dict.json`, or why that file does not qualify."""
    try:
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except FileNotFoundError:
        return "it has no dataset_dict.json"
    except (OSError, ValueError, KeyError, TypeError):
        return "its dataset_dict.json is not a datasets.DatasetDict index"
    if not isinstance(splits, list) or not set(map(str, splits)) <= set(SPLITS + GENERALISATION_SPLITS):
        return f"its dataset_dict.json lists splits {splits}, not among {', '.join(SPLITS + GENERALISATION_SPLITS)}"
    return [str(s) for s in splits]


def _split_folder_problem(folder: Path) -> str | None:
    """Why a split folder holds more than `datasets` files, or None."""
    if folder.is_symlink() or not folder.is_dir():
        return f"{folder.name} is not a split folder"
    for f in folder.iterdir():
        if f.is_symlink() or not f.is_file() or not _SPLIT_FILE.fullmatch(f.name):
            return f"it holds {folder.name}/{f.name}, which no builder writes"
    return None


def not_a_dataset(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a dataset folder written by a builder (see module doc), or None."""
    folder = Path(folder)
    splits = _split_names(folder)
    if isinstance(splits, str):
        return splits
    marker = _marker(folder) or {}
    listed = marker.get("files") if isinstance(marker.get("files"), list) else []
    extras = {MARKER, "dataset_dict.json", *KNOWN_EXTRA_FILES, *map(str, listed)}
    for entry in sorted(folder.iterdir()):
        if entry.name in splits:
            problem = _split_folder_problem(entry)
            if problem:
                return problem
        elif entry.name not in extras:
            return f"it holds {entry.name!r}, which no builder writes"
        elif entry.is_symlink() or not entry.is_file():
            return f"{entry.name} is not a plain file"
    missing = [s for s in splits if not (folder / s).is_dir()]
    return f"its split folders {missing} are missing" if missing else None


def _check_inputs(out: Path, inputs: dict) -> None:
    """Refuse an OUT that is, or contains, one of the build's inputs ({what: path})."""
    for what, path in inputs.items():
        if path is not None and resolves_inside(path, out):
            how = "is" if Path(path).resolve() == out.resolve() else "contains"
            raise DataPrepError(f"refusing to write to {out}: it {how} the {what} {path} (OUT is replaced "
                                f"as a whole); choose another --out", 2)


def check_out(out: str | os.PathLike, overwrite: bool = False, inputs: dict | None = None) -> Path:
    """Refuse an OUT that is not free, or not replaceable (see module doc); return OUT as a Path.

    `inputs` ({what: path}, e.g. {"image root": ...}) names files OUT must not be or contain.
    """
    out = Path(out)
    _check_inputs(out, inputs or {})
    if out.is_symlink():
        raise DataPrepError(f"{out} is a symbolic link; pass the folder it points to as --out", 2)
    if out.exists() and not out.is_dir():
        raise DataPrepError(f"{out} exists and is not a folder; choose another --out", 2)
    check_creatable(out.parent, out)  # the staging folder is created beside OUT
    if not out.is_dir() or not any(out.iterdir()):
        return out
    why = not_a_dataset(out)
    if why:
        raise DataPrepError(f"{out} exists and is not empty, and is not a dataset folder written by data_prep "
                            f"({why}); refusing to {'replace' if overwrite else 'use'} it: choose another --out", 2)
    if not overwrite:
        raise DataPrepError(f"{out} exists and is not empty (it holds a dataset); pass --overwrite to replace it", 2)
    return out


def check_creatable(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> None:
    """Refuse (one line, exit code 2) a `folder` that cannot be created or written into.

    Its nearest existing ancestor (or itself) must be a writable folder; `target` (default
    `folder`) is what the message says cannot be created.
    """
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if os.path.lexists(p))
    why = "is not a folder" if not existing.is_dir() else None
    if why is None and not os.access(existing, os.W_OK | os.X_OK):
        why = "is not writable"
    if why:
        raise DataPrepError(f"cannot create {target or folder}: {existing} {why}", 2)


# ----------------------------------------------------------------------------- staging
def alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (True when it cannot be told)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def _abandoned(work: Path) -> bool:
    """Whether `work` is a staging folder this code created whose build died (see module doc)."""
    try:
        pid, host = (work / _OWNER).read_text(encoding="utf-8").split()
        return host == socket.gethostname() and not alive(int(pid))
    except (OSError, ValueError):  # no owner file (not ours, or not yet written), or a foreign one
        return False


def remove_stale_staging(out: str | os.PathLike) -> list[Path]:
    """Remove the `.OUT.tmp-*` staging folders of OUT whose owner died; return those removed."""
    out = Path(out).absolute()
    prefix = f".{out.name}.tmp-"
    if not out.parent.is_dir():
        return []
    stale = [p for p in out.parent.iterdir()
             if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink() and _abandoned(p)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


@contextlib.contextmanager
def staging(out: str | os.PathLike, overwrite: bool = False, inputs: dict | None = None) -> Iterator[Path]:
    """Yield a scratch folder beside OUT; on success move `<scratch>/dataset` to OUT.

    Stale scratch folders of OUT (killed runs) are removed first. On any exception
    (KeyboardInterrupt included) the scratch folder is removed and OUT is left as it was.
    """
    out = check_out(out, overwrite, inputs).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (work / _OWNER).write_text(f"{os.getpid()} {socket.gethostname()}\n", encoding="utf-8")
        yield work
        _commit(work / "dataset", out, overwrite, work, inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _commit(src: Path, out: Path, overwrite: bool, work: Path, inputs: dict | None = None) -> None:
    """Rename the finished `src` to `out`, moving any old `out` into `work` first (checked again)."""
    if not src.is_dir():
        raise DataPrepError(f"internal error: nothing was staged for {out}")
    check_out(out, overwrite, inputs)
    if out.exists():
        os.replace(out, work / f"old-{uuid.uuid4().hex}")
    os.replace(src, out)


def verify_written(folder: Path, dsdict: datasets.DatasetDict) -> None:
    """Load `folder` back and check it has `dsdict`'s splits, row counts and features."""
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as err:  # IndexError, FileNotFoundError, ArrowInvalid, ...
        raise DataPrepError(f"the dataset just written does not load back ({type(err).__name__}: {err}); "
                            f"OUT was left as it was") from None
    want = {s: len(d) for s, d in dsdict.items()}
    got = {s: len(d) for s, d in loaded.items()} if isinstance(loaded, datasets.DatasetDict) else {}
    if got != want:
        raise DataPrepError(f"the dataset just written loads back with rows {got}, not {want}; OUT was left as it was")
    for s, d in dsdict.items():
        if loaded[s].features != d.features:
            raise DataPrepError(f"split {s} of the dataset just written loads back with other columns "
                                f"({loaded[s].features}); OUT was left as it was")


def write_dataset(
    dsdict: datasets.DatasetDict, folder: Path, extra_files: dict | None = None, builder: str = "data_prep",
) -> None:
    """Save `dsdict` into `folder` (not atomic), write `extra_files` ({name: str}), verify, mark.

    Empty splits are saved as one empty shard (loadable); the marker file is written last, after
    `verify_written`, so only a complete, loadable folder carries it.
    """
    missing = [s for s in SPLITS if s not in dsdict]
    if missing:
        raise DataPrepError(f"internal error: dataset lacks splits {missing}")
    extra_files = extra_files or {}
    if MARKER in extra_files:
        raise DataPrepError(f"internal error: {MARKER} is written by write_dataset")
    dsdict.save_to_disk(str(folder), num_shards={s: 1 for s, d in dsdict.items() if len(d) == 0})
    for name, text in extra_files.items():
        (folder / name).write_text(text, encoding="utf-8")
    verify_written(folder, dsdict)
    sizes = {s: len(d) for s, d in dsdict.items()}
    marker = {"format": MARKER_FORMAT, "version": 1, "builder": builder, "rows": sizes,
              "empty_splits": empty_splits(sizes), "files": sorted(extra_files)}
    (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")


def save_dataset(
    dsdict: datasets.DatasetDict,
    out: str | os.PathLike,
    overwrite: bool = False,
    extra_files: dict | None = None,
    builder: str = "data_prep",
) -> Path:
    """Atomically write `dsdict` (splits train/val/test) to OUT; return OUT."""
    with staging(out, overwrite) as work:
        write_dataset(dsdict, work / "dataset", extra_files, builder)
    return Path(out)
