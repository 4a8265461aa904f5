"""Throughput of the training data loader as a Colab run of the ``paper`` preset feeds it (no GPU needed).

The ``paper`` preset's training images: JPEG decode of a Flickr30K-sized photo (about 500 x 375), then
RandomResizedCrop(224, scale (0.08, 1)) and a random horizontal flip, ToTensor and Normalize, one item per
(image, caption) pair, batches tokenized by the collate function: ``hat_min.training.data.train_loader`` exactly as
``hat_min.training`` calls it (micro-batches of ``batch_size // grad_accum`` pairs, 29 for the ``colab`` recipe).

The images are generated: ``--images`` photo-like JPEGs (quality 90) of random smooth noise with a natural
image's falling spectrum (octaves of noise, each finer one weaker), so that their files weigh about what
Flickr30K's do (about 85 KB); flat colours would decode much faster than photos. Two copies of the dataset are
written in hat_min's on-disk format (``data_prep._common.save_dataset``): the images as they are, and pre-resized
to a shorter side of 256 px (what a prepared copy of the dataset could store). Each is read with 0, 1 and 2 DataLoader
workers; a Colab runtime has 2 CPU cores, where ``hat_min.evaluation.data.default_workers()`` picks 1.

    python benchmarks/loader.py                 # 300 images, batches of 29, workers 0 1 2: under a minute
    python benchmarks/loader.py --smoke         # a few seconds: 12 images, workers 0 and 1
    python benchmarks/loader.py --workers 0 1 2 4 --batch 58 --json loader.json

Images per second counts training pairs (each decodes its image once) after the first batch; the first batch,
which starts the worker processes, is timed on its own. With 0 workers the transforms run in the main process
with torch's intra-op threads (``--threads`` sets them; workers use one each): on cores other jobs keep busy,
two threads on these small tensors can be several times slower than one.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import datasets  # noqa: E402

from data_prep._common import image_cell, make_features, save_dataset  # noqa: E402
from hat_min import HATConfig  # noqa: E402
from hat_min.evaluation.data import load_splits  # noqa: E402
from hat_min.training.data import train_loader  # noqa: E402
from hat_min.encoders import load_tokenizer  # noqa: E402

# Flickr30K's photos are at most 500 px on their longer side; most are landscape.
SIZES = ((500, 375), (500, 375), (500, 333), (375, 500))
CAPTION = "a person in a red jacket walks a small dog along a wet street next to parked cars"


def paper_data_config() -> HATConfig:
    """The ``paper`` preset as the loader sees it (224 px, its crop and flip); the scratch text encoder brings
    bert-base-uncased's tokenizer offline (the MiniLM package ships the same vocabulary)."""
    return HATConfig.preset("paper", image_pretrained=False, text_model="scratch", text_layers=12,
                            text_width=768, text_heads=12)


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Random smooth noise with a photo's falling spectrum: octaves from 4 cells across up to one per pixel,
    each 0.85 times the one before, mostly in brightness (weaker colour), plus a little grain; about 85 KB as a
    quality-90 JPEG at 500 x 375 (Flickr30K's files: roughly 50 to 150 KB)."""
    canvas = np.zeros((height, width, 3), np.float32)
    cells, amplitude = 4, 1.0
    while cells <= max(width, height):
        grid = rng.standard_normal((max(2, height * cells // width), cells, 4)).astype(np.float32)
        layers = [np.asarray(Image.fromarray(grid[..., c], mode="F").resize((width, height), Image.BICUBIC))
                  for c in range(4)]  # 3 colours and a brightness, each (height, width)
        canvas += amplitude * (layers[3][..., None] + 0.35 * np.stack(layers[:3], axis=-1))
        cells, amplitude = cells * 2, amplitude * 0.85
    canvas = (canvas - canvas.mean()) / (canvas.std() + 1e-6)
    canvas += 0.15 * rng.standard_normal((height, width, 1)).astype(np.float32)  # grain
    tint = rng.uniform(-0.4, 0.4, 3).astype(np.float32)  # a colour cast per image
    pixels = np.clip(127.5 + 50.0 * (canvas + tint), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def shorter_side(image: Image.Image, side: int) -> Image.Image:
    width, height = image.size
    scale = side / min(width, height)
    return image.resize((round(width * scale), round(height * scale)), Image.BICUBIC)


def write_datasets(root: Path, n_images: int, seed: int = 0) -> dict[str, dict]:
    """Two datasets under ``root``: "full" (Flickr30K-sized JPEGs) and "256" (the same, shorter side 256 px)."""
    rng = np.random.default_rng(seed)
    rows = {"full": [], "256": []}
    for i in range(n_images):
        image = photo_like(rng, *SIZES[i % len(SIZES)])
        for name, picture in (("full", image), ("256", shorter_side(image, 256))):
            rows[name].append({"image": image_cell(jpeg(picture)), "captions": [f"{CAPTION} {k}" for k in range(5)],
                               "image_id": i, "filename": f"train/{i:06d}.jpg"})
    info = {}
    features = make_features()
    for name, items in rows.items():
        columns = {key: [row[key] for row in items] for key in items[0]}
        train = datasets.Dataset.from_dict(columns, features=features)
        tiny = train.select(range(1))
        save_dataset(datasets.DatasetDict({"train": train, "val": tiny, "test": tiny}), root / name)
        sizes = [len(row["image"]["bytes"]) for row in items]
        with Image.open(io.BytesIO(items[0]["image"]["bytes"])) as first:
            info[name] = {"path": root / name, "mean_kb": sum(sizes) / len(sizes) / 1024, "first_size": first.size}
    return info


def time_loader(split, config: HATConfig, tokenizer, batch: int, workers: int, max_batches: int | None) -> dict:
    """Iterate one epoch of ``train_loader`` (or its first ``max_batches``): first batch and steady images/s."""
    loader = train_loader(split, config, batch, tokenizer, workers=workers, seed=0, epoch=0)
    start = time.perf_counter()
    first, pairs, shape = None, 0, None
    for b, item in enumerate(loader):
        if first is None:
            first = time.perf_counter()
            shape = tuple(item["images"].shape)
        else:
            pairs += item["images"].shape[0]
        if max_batches is not None and b + 1 >= max_batches:
            break
    end = time.perf_counter()
    steady = end - first
    return {"workers": workers, "batch": batch, "first_batch_s": first - start, "pairs_timed": pairs,
            "images_per_s": pairs / steady if pairs else float("nan"), "total_s": end - start, "batch_shape": shape}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300, help="generated images (5 captions each: 5x the pairs)")
    p.add_argument("--batch", type=int, default=29, help="pairs per batch (the colab recipe's micro-batch: 29)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-batches", type=int, default=None, help="stop each run after this many batches")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the main process (default: torch's)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--smoke", action="store_true", help="12 images, batches of 4, workers 0 and 1")
    args = p.parse_args()
    if args.smoke:
        args.images, args.batch, args.workers, args.max_batches = 12, 4, [0, 1], 6
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    config = paper_data_config()
    tokenizer = load_tokenizer(config)
    results = []
    with tempfile.TemporaryDirectory(prefix="hat_loader_") as tmp:
        start = time.perf_counter()
        info = write_datasets(Path(tmp), args.images)
        print(f"generated {args.images} images in {time.perf_counter() - start:.1f} s: "
              + "; ".join(f"{name}: {v['first_size'][0]}x{v['first_size'][1]} (first), {v['mean_kb']:.0f} KB mean"
                          for name, v in info.items()))
        for name, v in info.items():
            split = load_splits(v["path"])["train"]
            for workers in args.workers:
                row = time_loader(split, config, tokenizer, args.batch, workers, args.max_batches)
                results.append({"images": name, "mean_kb": v["mean_kb"], **row})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {load:.1f}; batches of {args.batch} pairs at "
          f"{config.image_size} px, RandomResizedCrop{config.train_crop_scale} + flip\n")
    print("| stored images | JPEG mean | workers | images/s | first batch (s) | pairs timed |")
    print("|---|---|---|---|---|---|")
    for r in results:
        stored = "Flickr30K-sized (~500x375)" if r["images"] == "full" else "shorter side 256 px"
        print(f"| {stored} | {r['mean_kb']:.0f} KB | {r['workers']} | {r['images_per_s']:.0f} | "
              f"{r['first_batch_s']:.2f} | {r['pairs_timed']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "load_average": load, "results": results}, indent=2))


if __name__ == "__main__":
    main()
