"""A prepared dataset as evaluation reads it, and the transforms both training and evaluation use.

Every dataset, generated or real (``data_prep/``), is a ``datasets.DatasetDict`` on disk with splits
train / val / test and columns ``image``, ``captions`` (list of str), ``image_id``, ``filename``.
Evaluation takes every image once, in order, and the captions in order, so that caption j belongs to
image ``j // captions_per_image`` (the layout ``hat_min.metrics`` expects).

    splits = load_splits("data/synthetic")
    images = eval_image_loader(splits["test"], cfg)                # (B, 3, S, S) in dataset order
    ids, mask = tokenize(tokenizer, eval_captions(splits["test"]), cfg.max_text_len)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from data_prep import to_rgb

from ..config import HATConfig

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers + forked workers: no warnings

OFFLINE_DATA_HINT = "python -m data_prep.synthetic --out {path}"


def load_splits(path: str | Path):
    """The prepared ``DatasetDict`` at ``path``, with a clear message when it is missing."""
    import datasets

    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise FileNotFoundError(f"no prepared dataset at {path}; build the offline one with "
                                f"`{OFFLINE_DATA_HINT.format(path=path)}` (see data_prep/README.md)")
    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:  # pyarrow: ArrowInvalid is a ValueError, IO an OSError
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"the dataset at {path} is truncated or corrupt ({type(err).__name__}: {reason}); "
                         f"rebuild it (data_prep/README.md) or copy it again") from None


def first_images(split, n: int | None):
    """The first ``n`` images of a split (all of them for None or 0): whole families, which are adjacent rows
    in the generated splits (validation subsets, the demo's generalisation subsets)."""
    return split if not n else split.select(range(min(n, len(split))))


def image_transform(config: HATConfig, train: bool) -> T.Compose:
    """PIL RGB image -> normalised (3, S, S) tensor: random crop for training, resize + centre crop for eval."""
    size = config.image_size
    if train and config.train_crop_scale != (1.0, 1.0):
        resize = [T.RandomResizedCrop(size, scale=config.train_crop_scale)]
    else:
        resize = [T.Resize(round(size * config.eval_resize_ratio)), T.CenterCrop(size)]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(config.image_mean, config.image_std)])


def tokenize(tokenizer, captions: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (N, W), W <= max_len with [CLS] and [SEP], padded to the longest."""
    enc = tokenizer(list(captions), max_length=max_len, truncation=True, padding="longest", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def eval_captions(split, captions_per_image: int = 5) -> list[str]:
    """The first ``captions_per_image`` captions of every image, in order: caption j is image j // cpi's."""
    captions = list(split["captions"])
    short = [i for i, caps in enumerate(captions) if len(caps) < captions_per_image]
    if short:
        raise ValueError(f"{len(short)} images have fewer than {captions_per_image} captions "
                         f"(first: row {short[0]}); evaluation needs exactly {captions_per_image} per image")
    return [c for caps in captions for c in caps[:captions_per_image]]


class EvalImages(Dataset):
    """Every image of a split once, in order: (3, S, S) tensors."""

    def __init__(self, split, config: HATConfig):
        self.split = split
        self.transform = image_transform(config, train=False)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> torch.Tensor:
        image: Image.Image = self.split[index]["image"]
        return self.transform(to_rgb(image))


def default_workers() -> int:
    """DataLoader workers that work everywhere: none on macOS / Windows (spawn in notebooks), else up to 4."""
    if sys.platform in ("darwin", "win32"):
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def eval_image_loader(split, config: HATConfig, batch_size: int = 128, workers: int | None = None,
                      device: torch.device | None = None) -> DataLoader:
    """Every image of ``split`` once, in order, as (B, 3, S, S) batches."""
    workers = default_workers() if workers is None else workers
    return DataLoader(EvalImages(split, config), batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device is not None and device.type == "cuda")
