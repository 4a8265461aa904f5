"""Training batches: a prepared split (``data_prep/``) -> (image, caption) pairs, shuffled by ``EpochBatches``.

One sample per (image, caption) pair; an epoch's order is a pure function of (seed, epoch), so a killed
run resumes at any batch (``EpochBatches``), and on data with families of hard negatives (the generated
scenes) a batch can hold whole families. ``check_for_training`` refuses, before the first step, data
that training or its validation would trip on. (Evaluation's loaders: ``hat_min.evaluation.data``.)

    train = train_loader(splits["train"], cfg, batch_size=64)      # dicts of images (B,3,S,S), input_ids (B,W), ...

Augmentation and its trap: a horizontal flip turns "left of" into "right of". A loader that
flipped images without touching the captions would teach the model the wrong relation half
of the time, so a flipped image gets ``flip_caption(caption)``: left and right swapped
(``HATConfig.hflip_swaps_left_right``; the release, and the ``paper`` preset, flip only the pixels).
"""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T
from tqdm.auto import tqdm

from data_prep import to_rgb
from data_prep.captions import base_frame_caption, flip_caption, in_more_frame

from ..config import HATConfig
from ..encoders import load_tokenizer
from ..evaluation.data import default_workers, image_transform, tokenize

PRELOAD_BYTES = 2**30  # training images are decoded up front when their pixels fit in this


class TrainPairs(Dataset):
    """One item per (image, caption) pair: (image (3, S, S), caption str, image_id int).

    Without random crops (the offline presets), the split's images are decoded once up front
    into a uint8 tensor when they fit in ``PRELOAD_BYTES``: an item is then an index and a flip.
    """

    def __init__(self, split, config: HATConfig, preload: bool | None = None, progress: bool = True):
        self.split, self.hflip, self.swap_words = split, config.train_hflip, config.hflip_swaps_left_right
        self.transform = image_transform(config, train=True)
        self.normalize = T.Normalize(config.image_mean, config.image_std)
        self.captions = list(split["captions"])
        self.image_ids = [int(i) for i in split["image_id"]]
        self.pairs = [(row, k) for row, caps in enumerate(self.captions) for k in range(len(caps))]  # (row, caption)
        self.family_of_row = list(split["family"]) if "family" in split.column_names else None
        no_crop = config.train_crop_scale == (1.0, 1.0)
        if preload is None:
            preload = no_crop and len(split) * 3 * config.image_size**2 <= PRELOAD_BYTES
        if preload and not no_crop:
            raise ValueError("preloading decodes each image once, which rules out random crops (train_crop_scale)")
        self.pixels = _decode_all(split, config, progress) if preload else None  # (N_img, 3, S, S) uint8
        # True: a caption in one of the generator's MORE_TEMPLATES is replaced by a caption of the same image in the
        # ten base frames (TrainConfig.base_frames_until_accuracy; the training loop sets it): a new one written from
        # the image's scene record where the split has one (the generated scenes), else one of the image's own
        self.base_frames_only = False
        # read on the first base-frame caption (a run without the curriculum never reads them)
        self._scene_split = split if "scene" in split.column_names else None
        self._scenes: list[str] | None = None  # (N_img,) JSON strings
        self._base_of_row: list[list[int]] | None = None  # per row, its captions in the base frames (built once)

    def __len__(self) -> int:
        return len(self.pairs)

    def families(self) -> list[list[list[int]]] | None:
        """For each family of hard negatives (a ``family`` column), the pair indices of each of its images."""
        if self.family_of_row is None:
            return None
        pairs_of_row: dict[int, list[int]] = {}
        for index, (row, _) in enumerate(self.pairs):
            pairs_of_row.setdefault(row, []).append(index)
        groups: dict[int, list[list[int]]] = {}
        for row, family in enumerate(self.family_of_row):
            groups.setdefault(family, []).append(pairs_of_row[row])
        return list(groups.values())

    def _base_caption(self, row: int, k: int, seed: int | None) -> str:
        """Caption ``k`` of ``row`` if it is in the generator's base frames; else a base-frame caption of the same
        image: written afresh from its scene record (``seed`` fixes the words; one per (pair, epoch) from
        ``EpochBatches``), or, without scene records, one of the row's own (the ``k % n``-th; ``k`` if it has none)."""
        if self._base_of_row is None:
            self._base_of_row = [[j for j, c in enumerate(caps) if not in_more_frame(c)] for caps in self.captions]
        base = self._base_of_row[row]
        if k in base:
            return self.captions[row][k]
        if self._scene_split is not None:
            if self._scenes is None:
                self._scenes = list(self._scene_split["scene"])
            rng = np.random.default_rng(seed if seed is not None else int(torch.randint(2**62, ())))
            return base_frame_caption(json.loads(self._scenes[row]), rng)
        return self.captions[row][base[k % len(base)] if base else k]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, str, int]:
        """``key`` is an index, or (index, seed): the seed fixes this sample's flip and crop."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        row, k = self.pairs[index]
        caption = self._base_caption(row, k, seed) if self.base_frames_only else self.captions[row][k]
        if self.pixels is not None:  # decoded up front: the flip is the only random choice
            # the seed's lowest bit is a fair coin (seeds are uniform); no RNG to fork, 0.4 ms less an item
            coin = seed & 1 if seed is not None else int(torch.randint(2, ()))
            flip = self.hflip and bool(coin)  # flip the words with the pixels (module docstring)
            image = self.pixels[row].float().div_(255)  # (3, S, S)
            image = self.normalize(image.flip(-1) if flip else image)
        else:
            with torch.random.fork_rng(enabled=seed is not None):  # the seed fixes the flip and the crop
                if seed is not None:
                    torch.manual_seed(seed)
                flip = self.hflip and bool(torch.rand(()) < 0.5)
                image = to_rgb(self.split[row]["image"])
                image = self.transform(ImageOps.mirror(image) if flip else image)
        return image, flip_caption(caption) if flip and self.swap_words else caption, self.image_ids[row]


def _decode_all(split, config: HATConfig, progress: bool = True) -> torch.Tensor:
    """Every image of ``split`` resized and centre-cropped as for evaluation: (N_img, 3, S, S) uint8 (a progress
    bar from 5,000 images on, unless ``progress`` is False)."""
    size = config.image_size
    to_pixels = T.Compose([T.Resize(round(size * config.eval_resize_ratio)), T.CenterCrop(size), T.PILToTensor()])
    pixels = torch.empty(len(split), 3, size, size, dtype=torch.uint8)
    for i, item in enumerate(tqdm(split, desc="decoding images", unit="img", disable=not progress or len(split) < 5000)):
        pixels[i] = to_pixels(to_rgb(item["image"]))
    return pixels


class EpochBatches(Sampler):
    """Shuffled batches of (index, seed) for one epoch, a pure function of (seed, epoch).

    The same on every process (each rank takes its slice of the global batch) and resumable at
    any batch without replaying the ones before: what a killed run needs to continue exactly.

    With ``families`` (for each family, for each of its images, the indices of that image's
    pairs) an epoch is made of rounds, one caption of every image per round, and inside a round
    the images of a family stay together: every batch then holds whole families, so an image's
    hard negatives (its binding and role swaps) are in its batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1,
                 families: list[list[list[int]]] | None = None):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split over {world} processes")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start, self.rank, self.world, self.families = start, rank, world, families
        self.by_family = families is not None

    def __len__(self) -> int:
        return self.n // self.batch_size  # the last partial batch is dropped

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.families is None else _family_order(self.families, g)
        seeds = torch.randint(0, 2**62, (self.n,), generator=g)  # (n,) one augmentation seed per pair
        if self.families is not None:  # one flip per family and epoch (the seed's lowest bit, see TrainPairs)
            seeds = _family_flips(seeds, self.families, g)
        per_rank = self.batch_size // self.world
        for b in range(self.start, len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            mine = batch[self.rank * per_rank : (self.rank + 1) * per_rank]
            yield [(int(i), int(seeds[i])) for i in mine]


def _family_flips(seeds: torch.Tensor, families: list[list[list[int]]], g: torch.Generator) -> torch.Tensor:
    """``seeds`` with the lowest bit (the flip) shared by every pair of a family.

    A horizontal flip turns a "left of" scene into its own role swap: flipping one member of a
    family and not another would put two pictures of the same scene in a batch as each other's
    negatives. Flipping whole families keeps every member's swaps what they were.
    """
    coins = torch.randint(0, 2, (len(families),), generator=g)  # (n_families,)
    family_of = torch.empty(len(seeds), dtype=torch.long)
    for f, family in enumerate(families):
        for pairs in family:
            family_of[pairs] = f
    return (seeds & ~1) | coins[family_of]


def _family_order(families: list[list[list[int]]], g: torch.Generator) -> torch.Tensor:
    """All pair indices, in rounds (one caption per image) of shuffled, contiguous families."""
    images = [pairs for family in families for pairs in family]
    picks = [torch.randperm(len(pairs), generator=g).tolist() for pairs in images]  # caption order per image
    rounds = max(len(p) for p in picks)
    order, image_at = [], 0
    offsets = []  # first image index of every family
    for family in families:
        offsets.append(image_at)
        image_at += len(family)
    for r in range(rounds):
        for f in torch.randperm(len(families), generator=g).tolist():
            for i in range(offsets[f], offsets[f] + len(families[f])):
                if r < len(picks[i]):
                    order.append(images[i][picks[i][r]])
    return torch.tensor(order)


def check_for_training(splits, train_config=None, captions_per_image: int = 5) -> None:
    """Refuse, before the first training step, data that training or its validation would trip on later.

    ``splits`` must hold non-empty ``train`` and ``val`` splits with a ``captions`` column; the
    training pairs must fill one batch (``train_config.batch_size``); every validated image (the first
    ``train_config.val_images`` of ``val``) needs ``captions_per_image`` captions, as evaluation does
    (``eval_captions``); no image of train or val may have an empty or blank caption (it would train
    as a positive) or, in train, no caption at all. Reads the captions column only: no image is decoded.
    """
    def rows(bad: list[int]) -> str:
        return ", ".join(map(str, bad[:5])) + (f" ... ({len(bad)} in all)" if len(bad) > 5 else "")

    available = ", ".join(splits) or "none"
    captions = {}
    for name in ("train", "val"):
        if name not in splits:
            raise ValueError(f"the dataset has no {name!r} split (it has: {available}); training needs train and val")
        if "captions" not in splits[name].column_names:
            raise ValueError(f"the {name!r} split lacks the column captions; prepare it with data_prep")
        if len(splits[name]) == 0:
            raise ValueError(f"the {name!r} split is empty; training needs images with captions in train and val")
        captions[name] = splits[name].select_columns(["captions"])[:]["captions"]  # (N_img,) lists of str
    val_images = getattr(train_config, "val_images", None)
    captions["val"] = captions["val"][:val_images]  # the images validation scores
    for name, column in captions.items():
        blank = [row for row, caps in enumerate(column)
                 if (name == "train" and not caps) or any(not isinstance(c, str) or not c.strip() for c in caps)]
        if blank:
            raise ValueError(f"the {name!r} split has {len(blank)} image(s) with an empty or blank caption"
                             f"{' or with none' if name == 'train' else ''} (row(s) {rows(blank)}); fix or drop them "
                             "(a blank caption would count as a match of its image)")
    short = [row for row, caps in enumerate(captions["val"]) if len(caps) < captions_per_image]
    if short:
        raise ValueError(f"the 'val' split has {len(short)} image(s) with fewer than {captions_per_image} captions "
                         f"(row(s) {rows(short)}); validation needs {captions_per_image} per image "
                         f"(hat_min.evaluation), so training would stop at its first validation")
    batch_size = getattr(train_config, "batch_size", 1)
    pairs = sum(len(caps) for caps in captions["train"])
    if pairs < batch_size:
        raise ValueError(f"the training split has fewer pairs ({pairs}) than one batch of {batch_size}")


class PairCollate:
    """Stacks images and tokenizes captions: -> {images, input_ids, attention_mask, image_ids}."""

    def __init__(self, tokenizer, max_len: int):
        self.tokenizer, self.max_len = tokenizer, max_len

    def __call__(self, batch: list[tuple[torch.Tensor, str, int]]) -> dict[str, torch.Tensor]:
        images, captions, ids = zip(*batch)
        input_ids, attention_mask = tokenize(self.tokenizer, list(captions), self.max_len)
        return {"images": torch.stack(images), "input_ids": input_ids,  # (B, 3, S, S), (B, W)
                "attention_mask": attention_mask, "image_ids": torch.tensor(ids)}


def train_loader(split, config: HATConfig, batch_size: int, tokenizer=None, workers: int | None = None,
                 seed: int = 0, epoch: int = 0, start: int = 0, rank: int = 0, world: int = 1,
                 device: torch.device | None = None, by_family: bool = False) -> DataLoader:
    """Shuffled batches of (image, caption) pairs for one epoch, starting at batch ``start``.

    ``by_family``: keep families of hard negatives together in batches (see ``EpochBatches``).

    ``split`` is a dataset split or an already built ``TrainPairs`` (reused across epochs).
    With ``world`` > 1, ``batch_size`` is the global batch and this process gets its slice.
    """
    tokenizer = tokenizer or load_tokenizer(config)
    pairs = split if isinstance(split, TrainPairs) else TrainPairs(split, config)
    if workers is None:  # preloaded images need no worker processes
        workers = 0 if pairs.pixels is not None else default_workers()
    families = pairs.families() if by_family else None
    sampler = EpochBatches(len(pairs), batch_size, seed, epoch, start, rank, world, families)
    # Its own generator: creating the loader must not draw from the global RNG (dropout's), or a
    # resumed run would diverge from an uninterrupted one.
    return DataLoader(pairs, batch_sampler=sampler, collate_fn=PairCollate(tokenizer, config.max_text_len),
                      num_workers=workers, pin_memory=device is not None and device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


