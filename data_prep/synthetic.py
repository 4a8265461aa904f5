"""Synthetic shapes: the embedded, offline default dataset of hat_min.

What: small rendered scenes of two groups of coloured shapes, each image with FIVE different
captions, e.g. "two small red triangles above a large striped blue circle". It stands in for
Flickr30K/MSCOCO when there is no internet and no GPU, and it is built so that retrieval is a
real problem at the levels of meaning HAT aligns separately (paper Sec. 3, "hierarchical
alignment": shallow Swin stages with shallow BERT layers, deep with deep):

- low level: colour (8), texture (plain, striped, dotted), size (small, large);
- middle level: object kind (circle, square, triangle, diamond, star, cross) and count (1-3);
- high level: the spatial relation between the two groups (above/below, left of/right of) and
  which attributes belong to which group (binding).

Hard negatives. Scenes come in FAMILIES of four: the base scene, its *binding swap* (one
attribute - colour, texture or size - exchanged between the two groups) and its *role swap*
(the two groups exchange places), plus both swaps together. All four have the same bag of
words, so a bag-of-words model cannot tell them apart; only a model that binds attributes to
objects and reads the relation can. A family never straddles two splits, so every test image
has its hard negatives in the test split. Scene descriptions never repeat across splits.

Scenes are stored canonically: `relation` is "above" or "left of" and reads
"subject relation object"; "below" / "right of" describe the same scenes with the roles
exchanged, and the captions use all four (plus synonyms and re-phrasings such as
"B below A" for "A above B"). Seven captions in ten (by default, ``MORE_FRAMES``) are in ten frames where the
group just before the relation word is the one it places; three in ten in eight frames where it is not
("below B is A"), so that the order of the words alone never tells which group is on top.

Augmentation lesson: a horizontal flip turns "left of" into "right of". A loader that flips an
image must flip its caption too - see `flip_caption` (and `flip_scene` for the scene record).
A vertical flip would need "above"<->"below" AND would turn triangles and stars upside down,
so do not use one.

Determinism: everything derives from `seed` (numpy PCG64 streams keyed by seed, split and row),
so the same arguments give byte-identical images and captions on every run. The test split
depends only on `seed` and `n_test` (it is drawn first), so changing `--n-train` never
changes the benchmark.

Unseen phrasing. Two more test-only splits hold the test images again (same rows, image ids and
scenes) with five captions each from a grammar that no training, validation or pretraining
caption uses (``data_prep.phrasing``): `test_frames`, new sentence frames with the generator's
own words ("we see two red triangles above a large blue circle"), and `test_words`, new frames
and new words ("a couple of crimson wedges atop a huge cobalt orb"). A model that learnt the
generator's templates rather than the language scores well on `test` and badly on these.

Limits (`LIMITS`, checked before any work; the CLI says which one in one line, exit code 2; the
Python API raises `SizeError`, a ValueError): image size 32 to 512 px (the renderer draws at 4x,
so 512 px is a 2048 px canvas per image); train 1 to 200,000 images; val, test and test_unseen
1 to 50,000 each (well inside the 730,800 distinct scenes of train/val/test and 480,168 of
test_unseen, so that drawing unique families stays fast); seed >= 0; and, since every image is held
in memory until the dataset is written, at most 2**33 = 8,589,934,592 pixels in all
(images x side**2: 350,000 images of 64 px, or 32,768 of 512 px).

Run:
    python -m data_prep.synthetic --out data/synthetic            # 10,000 / 500 / 1,000
    python -m data_prep.synthetic --out DIR --n-train 2000 --image-size 96 --seed 1 --overwrite

Columns: image (PNG), captions (5 str), image_id (train from 0, val from 1,000,000, test, test_frames and
test_words from 2,000,000, test_unseen from 3,000,000), filename ("test/000123.png"), family (int, shared by the four members of a family;
rows of a family are adjacent) and scene, a JSON string:
    {"relation": "above" | "left of", "subject": GROUP, "object": GROUP,
     "variant": "base" | "binding" | "role" | "binding+role", "swapped": "colour" | "texture" | "size",
     "image_size": 64, "boxes": {"subject": [[x0, y0, x1, y1], ...], "object": [...]}}
with GROUP = {"count": 1-3, "size", "colour", "texture", "shape"}. `parse_caption` reads any
caption back into {"relation", "subject", "object"}.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import operator
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from data_prep.captions import (  # noqa: F401  (re-exported: the public names of the generator)
    ATTRIBUTES,
    BINDING_ATTRIBUTES,
    COLOURS,
    COUNTS,
    HELD_OUT_COMBINATIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    VARIANTS,
    flip_caption,
    flip_scene,
    held_out_combinations,
    is_unseen,
    make_captions,
    more_frames_problem,
    parse_caption,
    pick_one,
)
from data_prep.phrasing import phrase_captions
from data_prep._common import (
    GENERALISATION_SPLITS,
    PHRASING_SPLITS,
    SPLITS,
    UNSEEN_SPLIT,
    DataPrepError,
    folder_size,
    image_cell,
    make_features,
    run_cli,
)
from data_prep._write import check_out, save_dataset

SCENE_FEATURES = make_features({"scene": datasets.Value("string"), "family": datasets.Value("int64")})

_SPLIT_ORDER = ("test", "val", "train")  # drawn in this order: test depends on n_test only
# The random stream of each split (numpy seeds [seed, stream, ...]): test_unseen is drawn after the three.
_STREAM = {"test": 0, "val": 1, "train": 2, "test_frames": 3, "test_words": 4, "test_unseen": 5}
_ID_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000, "test_unseen": 3_000_000}
_SIZE_FRACTION = {"small": 0.16, "large": 0.27}  # object diameter / image side
# The sizes the generator supports (see the module doc): {argument: (lowest, highest)}.
LIMITS = {"image_size": (32, 512), "n_train": (1, 200_000), "n_val": (1, 50_000), "n_test": (1, 50_000),
          "n_unseen": (1, 50_000)}
MAX_PIXELS = 2**33  # images x image_size**2, all held in memory while rendering


class SizeError(DataPrepError, ValueError):
    """A size argument beyond `LIMITS` (exit code 2 on the command line)."""

    def __init__(self, message: str):
        super().__init__(message, 2)


def check_sizes(params: dict, flags: bool = False) -> None:
    """Raise SizeError unless the sizes and seed in `params` are within `LIMITS`; `flags`: name them as --options."""
    named = (lambda key: "--" + key.replace("_", "-")) if flags else str
    for key in (*LIMITS, "seed"):
        if params.get(key) is None:
            continue
        low, high = LIMITS.get(key, (0, None))
        try:
            value = operator.index(params[key])
        except TypeError:
            raise SizeError(f"{named(key)} must be an integer, not {params[key]!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low:,} and {high:,}" if high is not None else f">= {low}"
            raise SizeError(f"{named(key)} must be {bound}, not {value:,}")
    images = sum(params.get(k) or 0 for k in ("n_train", "n_val", "n_test", "n_unseen"))
    side = params.get("image_size", 64)
    if images * side**2 > MAX_PIXELS:
        raise SizeError(f"{images:,} images of {side} px are too many to hold in memory: at most {MAX_PIXELS:,} "
                        f"pixels in all (images x {named('image_size')} squared)")


# ----------------------------------------------------------------------------- scenes
def scene_key(scene: dict) -> str:
    """A string that identifies a scene's content (relation, subject, object) and nothing else."""
    return json.dumps([scene["relation"], scene["subject"], scene["object"]], sort_keys=True)


def _sample_group(rng: np.random.Generator) -> dict:
    """A random group: {count, size, colour, texture, shape}."""
    return {"count": int(pick_one(rng, COUNTS)), "size": pick_one(rng, SIZES), "colour": pick_one(rng, tuple(COLOURS)),
            "texture": pick_one(rng, TEXTURES), "shape": pick_one(rng, SHAPES)}


def _sample_pair(rng: np.random.Generator) -> tuple[dict, dict]:
    """Two groups of different colour that also differ in at least one other attribute.

    The second condition keeps the four members of a family distinct whatever is swapped.
    """
    while True:
        a, b = _sample_group(rng), _sample_group(rng)
        others = sum(a[k] != b[k] for k in ATTRIBUTES if k != "colour")
        if a["colour"] != b["colour"] and others >= 1:
            return a, b


def sample_family(rng: np.random.Generator) -> list[dict]:
    """A base scene followed by its binding swap, role swap and both swaps."""
    a, b = _sample_pair(rng)
    relation = pick_one(rng, RELATIONS)
    attr = pick_one(rng, [k for k in BINDING_ATTRIBUTES if a[k] != b[k]])
    a2, b2 = {**a, attr: b[attr]}, {**b, attr: a[attr]}
    pairs = ((a, b), (a2, b2), (b, a), (b2, a2))
    return [{"relation": relation, "subject": s, "object": o, "variant": v, "swapped": attr}
            for (s, o), v in zip(pairs, VARIANTS)]


def _split_scenes(n: int, rng: np.random.Generator, seen: set, unseen: bool = False) -> list[tuple[int, dict]]:
    """`n` (family index, scene) pairs whose scenes are not in `seen` (which is updated).

    Whole families whose four scenes all have no held-out combination (``HELD_OUT_COMBINATIONS``),
    or with `unseen`, all have one (test_unseen).
    """
    rows: list[tuple[int, dict]] = []
    family = 0
    while len(rows) < n:
        members = sample_family(rng)
        keys = [scene_key(s) for s in members]
        if any(k in seen for k in keys) or any(is_unseen(s) != unseen for s in members):
            continue
        seen.update(keys)
        rows.extend((family, s) for s in members[: n - len(rows)])
        family += 1
    return rows


# ----------------------------------------------------------------------------- layout
def _place_group(group: dict, band: tuple[float, float], rng: np.random.Generator, side: float) -> list:
    """Boxes (along, across) for a group laid out in a row along the band."""
    margin = 0.04 * side
    sizes = [_SIZE_FRACTION[group["size"]] * side * rng.uniform(0.92, 1.08) for _ in range(group["count"])]
    free = side - 2 * margin - sum(sizes)
    gaps = [min(rng.uniform(0.05, 0.12) * side, 0.8 * free / max(len(sizes) - 1, 1)) for _ in sizes[1:]]
    pos = margin + rng.uniform(0, free - sum(gaps))
    boxes = []
    for i, s in enumerate(sizes):
        centre = rng.uniform(band[0] + s / 2, band[1] - s / 2)
        boxes.append([pos, centre - s / 2, pos + s, centre + s / 2])
        pos += s + (gaps[i] if i < len(gaps) else 0)
    return boxes


def _layout(scene: dict, rng: np.random.Generator, side: int) -> dict:
    """Object boxes [x0, y0, x1, y1] (pixels) per role; every subject box lies wholly above
    (or left of) every object box, with a gap of at least 7 % of the side."""
    margin, half_gap = 0.04 * side, 0.035 * side
    mid = side / 2 + rng.uniform(-0.04, 0.04) * side
    bands = {"subject": (margin, mid - half_gap), "object": (mid + half_gap, side - margin)}
    boxes = {role: _place_group(scene[role], bands[role], rng, side) for role in ("subject", "object")}
    if scene["relation"] == "left of":  # rows of the vertical layout become columns
        boxes = {r: [[y0, x0, y1, x1] for x0, y0, x1, y1 in bs] for r, bs in boxes.items()}
    return {r: [[round(v, 1) for v in b] for b in bs] for r, bs in boxes.items()}


# ----------------------------------------------------------------------------- rendering
def _shape_geometry(shape: str, cx: float, cy: float, r: float) -> tuple[str, list]:
    """('ellipse', bbox) or ('polygon', points) of a shape centred at (cx, cy), radius r."""
    if shape == "circle":
        return "ellipse", [cx - r, cy - r, cx + r, cy + r]
    if shape == "square":
        q = 0.86 * r
        pts = [(-q, -q), (q, -q), (q, q), (-q, q)]
    elif shape == "triangle":
        pts = [(0, -r), (r, 0.8 * r), (-r, 0.8 * r)]
    elif shape == "diamond":
        pts = [(0, -r), (0.78 * r, 0), (0, r), (-0.78 * r, 0)]
    elif shape == "star":
        pts = [(math.sin(a) * (r if k % 2 == 0 else 0.45 * r), -math.cos(a) * (r if k % 2 == 0 else 0.45 * r))
               for k, a in enumerate(np.arange(10) * math.pi / 5)]
    else:  # cross (a plus sign)
        w = 0.32 * r
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w),
               (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
    return "polygon", [(cx + x, cy + y) for x, y in pts]


def _draw_geometry(draw: ImageDraw.ImageDraw, geometry: tuple, **kw) -> None:
    """Draw a geometry from `_shape_geometry` with ImageDraw keyword arguments."""
    kind, xy = geometry
    (draw.ellipse if kind == "ellipse" else draw.polygon)(xy, **kw)


def _texture(side: int, colour: str, texture: str, rng: np.random.Generator, scale: int) -> Image.Image:
    """A square RGB fill pattern: plain colour, stripes (period 4 px) or dots (period 4.5 px)."""
    rgb = np.array(COLOURS[colour], dtype=np.uint8)
    fill = np.broadcast_to(rgb, (side, side, 3)).copy()
    if texture == "plain":
        return Image.fromarray(fill)
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    accent = (rgb * 0.3).astype(np.uint8) if luminance > 150 else np.array([250, 250, 250], np.uint8)
    yy, xx = np.mgrid[0:side, 0:side] / scale  # output-pixel units
    if texture == "striped":
        angle = math.radians(pick_one(rng, (0, 45, 90, 135)))
        on = (xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, 4)) % 4.0 < 2.0
    else:
        ox, oy = rng.uniform(0, 4.5, size=2)
        on = ((xx + ox) % 4.5 - 2.25) ** 2 + ((yy + oy) % 4.5 - 2.25) ** 2 < 1.15**2
    fill[on] = accent
    return Image.fromarray(fill)


def _background(rng: np.random.Generator, side: int) -> Image.Image:
    """A light, softly mottled background: random tint plus smooth low-frequency blotches."""
    base = rng.uniform(200, 232) + rng.uniform(-10, 10, size=3)
    blotches = base + rng.normal(0, 6, size=(4, 4, 3))
    small = Image.fromarray(np.clip(blotches, 0, 255).astype(np.uint8))
    return small.resize((side, side), Image.BICUBIC)


def _draw_object(canvas: Image.Image, box: list, group: dict, rng: np.random.Generator, scale: int) -> None:
    """Paint one textured, outlined shape into its box on the supersampled canvas."""
    x0, y0, x1, y1 = (v * scale for v in box)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    ox, oy, side = int(cx - r) - 1, int(cy - r) - 1, int(2 * r) + 3
    mask = Image.new("L", (side, side), 0)
    _draw_geometry(ImageDraw.Draw(mask), _shape_geometry(group["shape"], cx - ox, cy - oy, r), fill=255)
    canvas.paste(_texture(side, group["colour"], group["texture"], rng, scale), (ox, oy), mask)
    dark = tuple(int(c * 0.45) for c in COLOURS[group["colour"]])
    outline = _shape_geometry(group["shape"], cx, cy, r)
    _draw_geometry(ImageDraw.Draw(canvas), outline, outline=dark, width=scale)


def render_scene(scene: dict, rng: np.random.Generator, image_size: int = 64, scale: int = 4) -> Image.Image:
    """Render a scene that carries `boxes`: drawn at `scale` x, downsampled with LANCZOS."""
    canvas = _background(rng, image_size * scale)
    for role in ("subject", "object"):
        for box in scene["boxes"][role]:
            _draw_object(canvas, box, scene[role], rng, scale)
    return canvas.resize((image_size, image_size), Image.LANCZOS)


def _make_row(split: str, index: int, family: int, scene: dict, seed: int, image_size: int,
              more_frames: float = 0.0) -> dict:
    """Lay out, render and caption one scene; return a dataset row."""
    rng = np.random.default_rng([seed, _STREAM[split], index])
    scene = {**scene, "image_size": image_size, "boxes": _layout(scene, rng, image_size)}
    buf = io.BytesIO()
    render_scene(scene, rng, image_size).save(buf, format="PNG")
    return {
        "image": image_cell(buf.getvalue()),
        "captions": make_captions(scene, rng, more_frames=more_frames),
        "image_id": _ID_OFFSET[split] + index,
        "filename": f"{split}/{index:06d}.png",
        "scene": json.dumps(scene, sort_keys=True),
        "family": _ID_OFFSET[split] + family,
    }


# ----------------------------------------------------------------------------- dataset
# The share of the generator's captions written in the eight frames whose word order does not tell which group is on
# top (captions.MORE_TEMPLATES): without them the demo model learns the roles from the order of the words and
# misreads new phrasings (data_prep/README.md). 0.3 from 2026-12-04; 0 gives the earlier dataset.
MORE_FRAMES = 0.3
# The default dataset (``build``, ``ensure_default``, the CLI): what `make demo` and the notebooks train on.
DEFAULTS = {"n_train": 10_000, "n_val": 500, "n_test": 1_000, "image_size": 64, "seed": 0, "more_frames": MORE_FRAMES}


def generate(
    n_train: int = 10_000, n_val: int = 500, n_test: int = 1_000, image_size: int = 64, seed: int = 0,
    progress: bool = True, n_unseen: int | None = None, more_frames: float = MORE_FRAMES, workers: int | None = 1,
) -> datasets.DatasetDict:
    """Generate the synthetic dataset in memory (deterministic in all arguments).

    train / val / test, then the generalisation splits: test_unseen (``n_unseen`` new images, as many
    as test unless given; whole families whose every scene has a held-out combination), test_frames
    and test_words (the test rows again, captions from the held-out grammar). ``more_frames``: the share
    of the generator's captions (every split but those two) written in ``captions.MORE_TEMPLATES``, whose
    word order does not give the roles away (default ``MORE_FRAMES``, 0.3; 0 writes none and draws nothing
    for them: the dataset as it was before 2026-12-04). ``workers``: processes that render the images (1, the
    default: this one; None: one per core, at most 8, from ``PARALLEL_FROM`` images on, as the command line and
    ``ensure_default`` ask); every image has its own random stream, so the dataset is the same whatever the number.
    """
    if problem := more_frames_problem(more_frames):  # before anything is rendered
        raise SizeError(problem)
    n_unseen = n_test if n_unseen is None else n_unseen
    check_sizes({"n_train": n_train, "n_val": n_val, "n_test": n_test, "n_unseen": n_unseen,
                 "image_size": image_size, "seed": seed})
    sizes = {"train": n_train, "val": n_val, "test": n_test, UNSEEN_SPLIT: n_unseen}
    seen: set = set()
    scenes = {s: _split_scenes(sizes[s], np.random.default_rng([seed, _STREAM[s], 2**31]), seen,
                               unseen=s == UNSEEN_SPLIT)
              for s in (*_SPLIT_ORDER, UNSEEN_SPLIT)}
    jobs = [(split, i, family, scene, seed, image_size, more_frames)
            for split in ("train", "val", "test", UNSEEN_SPLIT) for i, (family, scene) in enumerate(scenes[split])]
    made = _render(jobs, _workers(len(jobs)) if workers is None else workers, progress)
    rows = {split: [row for job, row in zip(jobs, made) if job[0] == split]
            for split in ("train", "val", "test", UNSEEN_SPLIT)}
    for name in PHRASING_SPLITS:  # the test rows again, captions from the held-out grammar
        written = phrasing_split_captions(name, [row["scene"] for row in rows["test"]], seed)
        rows[name] = [{**row, "captions": caps} for row, caps in zip(rows["test"], written)]
    return datasets.DatasetDict({name: _dataset(rows[name]) for name in (*SPLITS, *GENERALISATION_SPLITS)})


def phrasing_split_captions(split: str, scenes: list[str], seed: int,
                            new_words: bool | tuple[str, ...] | None = None) -> list[list[str]]:
    """The five captions of each row of phrasing split ``split`` (``test_frames`` or ``test_words``), from its
    ``scene`` records (JSON strings), drawn as ``generate`` draws them: row i from its own stream
    ``[seed, split, i]``. ``new_words`` (``data_prep.phrasing.phrase_captions``'s) replaces the split's own choice
    (every kind of word new for ``test_words``, none for ``test_frames``): ``benchmarks/words.py`` draws
    ``test_words``'s captions with new synonyms for one kind of word at a time."""
    if split not in PHRASING_SPLITS:
        raise ValueError(f"{split!r} is not a phrasing split; choose one of {list(PHRASING_SPLITS)}")
    if new_words is None:
        new_words = split == "test_words"
    return [phrase_captions(json.loads(scene), np.random.default_rng([seed, _STREAM[split], i]), new_words)
            for i, scene in enumerate(scenes)]


# What each split is, for the dataset card (synthetic.json beside the data).
SPLIT_CARD = {
    "train": "training scenes: whole families, no group with a held-out combination",
    "val": "validation scenes, drawn like train",
    "test": "test scenes, drawn like train (depends on the seed and n_test only)",
    UNSEEN_SPLIT: "new test scenes whose every family member has a group with a held-out combination "
                  "(held_out_combinations: in no train, val, test or encoder-pretraining scene)",
    "test_frames": "the test images again, captions in sentence frames no training or pretraining caption uses "
                   "(data_prep.phrasing), with the generator's words",
    "test_words": "the test images again, captions in those frames and with words no training or pretraining "
                  "caption uses",
}


# From this many images on, ``generate`` renders in several processes (fewer: starting them costs more than it saves).
PARALLEL_FROM = 2_000


def _workers(n_images: int) -> int:
    """Rendering processes for ``n_images``: one per core this process may use, at most 8; 1 below PARALLEL_FROM."""
    if n_images < PARALLEL_FROM:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 8))


def _make_row_of(job: tuple) -> dict:
    """``_make_row(*job)``, for a process pool."""
    return _make_row(*job)


def _render(jobs: list[tuple], workers: int, progress: bool) -> list[dict]:
    """The rows of ``jobs`` (``_make_row`` arguments), in order, rendered by ``workers`` processes (1: this one).

    The pool forks where the platform can and this process runs one thread (nothing to import again; the
    rendering uses numpy and PIL only); otherwise (a Jupyter kernel has several threads) it spawns."""
    bar = dict(total=len(jobs), desc="rendering scenes", unit="img", disable=not progress, mininterval=0.5)
    if workers <= 1:
        return [_make_row_of(job) for job in tqdm(jobs, **bar)]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods and threading.active_count() == 1 else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(tqdm(pool.map(_make_row_of, jobs, chunksize=64), **bar))


def _dataset(rows: list[dict]) -> datasets.Dataset:
    """Rows of ``_make_row`` as a ``datasets.Dataset``."""
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in SCENE_FEATURES}, features=SCENE_FEATURES)


def build(out: str | Path, overwrite: bool = False, **kwargs) -> Path:
    """Generate (see `generate` for keyword arguments) and atomically save to OUT; unless ``workers`` says
    otherwise, in one rendering process per core from 2,000 images on (``generate``'s default is one process)."""
    params = {"workers": None, **DEFAULTS, **kwargs}
    if params.get("n_unseen") is None:  # the card records the size test_unseen got
        params["n_unseen"] = params["n_test"]
    check_out(out, overwrite)  # fail before the work, not after (generate checks the sizes before any)
    dsdict = generate(**params)
    params.pop("progress", None)
    params.pop("workers", None)  # how it was rendered, not what
    meta = json.dumps({"generator": "data_prep.synthetic", **params,
                       "splits": {name: {"images": len(dsdict[name]), "what": SPLIT_CARD[name]} for name in dsdict},
                       "held_out_combinations": list(HELD_OUT_COMBINATIONS)}, indent=2)
    return save_dataset(dsdict, out, overwrite=overwrite, extra_files={"synthetic.json": meta},
                        builder="data_prep.synthetic")


def ensure_default(out: str | Path) -> Path:
    """Return OUT, first building the default synthetic dataset there if it is missing (an existing dataset
    is kept as it is: ``not_default`` says how it differs)."""
    out = Path(out)
    if (out / "dataset_dict.json").is_file():
        return out
    return build(out)


def not_default(out: str | Path) -> str | None:
    """How the generated dataset at OUT differs from the default one (its card, synthetic.json, against
    ``DEFAULTS``), as a sentence with the command that rebuilds it; None if it is the default one, or if
    it has no card (data prepared otherwise)."""
    card = Path(out) / "synthetic.json"
    if not card.is_file():
        return None
    try:
        meta = json.loads(card.read_text())
    except (OSError, ValueError):
        return None
    meta.setdefault("more_frames", 0.0)  # cards written before the option existed
    meta.setdefault("n_unseen", meta.get("n_test"))
    wanted = {**DEFAULTS, "n_unseen": DEFAULTS["n_test"]}
    differ = [f"{k} {meta.get(k)!r} (default {v!r})" for k, v in wanted.items() if meta.get(k) != v]
    if not differ:
        return None
    return (f"the dataset at {out} is not the default one: {', '.join(differ)}; the demo's numbers are measured on "
            f"the default (`python -m data_prep.synthetic --out {out} --overwrite` rebuilds it, about a minute)")


def _range(key: str) -> str:
    """'LOW to HIGH' of `LIMITS[key]`, for --help."""
    low, high = LIMITS[key]
    return f"{low:,} to {high:,}"


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m data_prep.synthetic", description=__doc__.split("\n")[0],
                                epilog=f"The images are held in memory until written: at most {MAX_PIXELS:,} "
                                       f"pixels in all (images x image size squared).")
    p.add_argument("--out", required=True, help="output folder (a datasets.DatasetDict)")
    p.add_argument("--n-train", type=int, default=10_000, help=f"training images, {_range('n_train')}")
    p.add_argument("--n-val", type=int, default=500, help=f"validation images, {_range('n_val')}")
    p.add_argument("--n-test", type=int, default=1_000, help=f"test images, {_range('n_test')}")
    p.add_argument("--n-unseen", type=int, default=None,
                   help="images of test_unseen (held-out attribute combinations; default: as many as --n-test), "
                        f"{_range('n_unseen')}")
    p.add_argument("--image-size", type=int, default=64,
                   help=f"side of the square images in pixels, {_range('image_size')}")
    p.add_argument("--seed", type=int, default=0, help="random seed, >= 0")
    p.add_argument("--more-frames", type=float, default=MORE_FRAMES, metavar="SHARE",
                   help="share of the captions, 0 to 1, written in frames whose word order does not tell which "
                        f"group is on top (data_prep.captions.MORE_TEMPLATES; default {MORE_FRAMES}; 0: none, "
                        "the dataset before 2026-12-04)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """CLI: build the synthetic dataset and print a one-line summary."""
    a = _parse_args(argv)
    start = time.perf_counter()
    n_unseen = a.n_test if a.n_unseen is None else a.n_unseen
    check_sizes({"n_train": a.n_train, "n_val": a.n_val, "n_test": a.n_test, "n_unseen": n_unseen,
                 "image_size": a.image_size, "seed": a.seed}, flags=True)
    out = build(a.out, overwrite=a.overwrite, n_train=a.n_train, n_val=a.n_val, n_test=a.n_test, n_unseen=n_unseen,
                image_size=a.image_size, seed=a.seed, more_frames=a.more_frames)
    total = a.n_train + a.n_val + a.n_test + n_unseen
    print(f"wrote {total} images (train {a.n_train}, val {a.n_val}, test {a.n_test}, {UNSEEN_SPLIT} {n_unseen} "
          f"with held-out attribute combinations, and the test images again as {' and '.join(PHRASING_SPLITS)} "
          f"with held-out phrasings; {a.image_size} px, "
          f"seed {a.seed}) to {out} in {time.perf_counter() - start:.1f} s, {folder_size(out) / 1e6:.1f} MB")


if __name__ == "__main__":
    run_cli(main)
