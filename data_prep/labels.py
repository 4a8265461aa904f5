"""Free labels of the generated scenes, for pretraining the offline encoders (``hat_min.weights``).

The generator knows everything about a scene, so labels cost nothing:

- ``patch_labels``: the colour, shape, texture, size and count of the object under every cell of
  a grid over the image (or background), drawn again from the scene's boxes;
- ``labelled_scenes``: scenes rendered with those labels, none of them a scene of the retrieval
  data (``default_scene_keys``: every split of the default generated dataset);
- ``data_prep.captions.group_spans`` gives the same for captions: where each group's words are.

    exclude = default_scene_keys()                                   # seed 0, 10,000 / 500 / 1,000
    images, labels = labelled_scenes(1000, seed=1, exclude=exclude)  # (1000, 64, 64, 3), (1000, 5, 8, 8)
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from data_prep import synthetic
from data_prep.captions import COLOURS, COUNTS, SHAPES, SIZES, TEXTURES

LABEL_FIELDS = ("colour", "shape", "texture", "size", "count")  # per-patch attributes, 0 = background
LABEL_CLASSES = {"colour": tuple(COLOURS), "shape": SHAPES, "texture": TEXTURES, "size": SIZES, "count": COUNTS}


def patch_labels(scene: dict, grid: int, min_cover: float = 0.15, scale: int = 2) -> np.ndarray:
    """The attributes of the object under each cell of a grid x grid partition of a scene's image.

    Free dense supervision for pretraining an image encoder (``hat_min.weights``): the scene's
    objects are drawn again as masks, and each cell takes the object that covers most of it
    (background when none covers ``min_cover`` of the cell). -> (len(LABEL_FIELDS), grid, grid)
    int64, class index + 1 per field (``LABEL_CLASSES``), 0 for background.
    """
    side = scene["image_size"] * scale
    if side % grid:
        raise ValueError(f"a {scene['image_size']}-px scene does not split into a {grid}x{grid} grid")
    labels = np.zeros((len(LABEL_FIELDS), grid, grid), dtype=np.int64)
    best = np.full((grid, grid), min_cover)
    cell = side // grid
    for role in ("subject", "object"):
        group = scene[role]
        values = [LABEL_CLASSES[f].index(group[f]) + 1 for f in LABEL_FIELDS]
        for box in scene["boxes"][role]:
            x0, y0, x1, y1 = (v * scale for v in box)
            mask = Image.new("L", (side, side), 0)
            geometry = synthetic._shape_geometry(group["shape"], (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2)
            synthetic._draw_geometry(ImageDraw.Draw(mask), geometry, fill=1)
            cover = np.asarray(mask, dtype=np.float64).reshape(grid, cell, grid, cell).mean(axis=(1, 3))  # (g, g)
            won = cover > best
            best = np.where(won, cover, best)
            labels[:, won] = np.array(values)[:, None]
    return labels


def default_scene_keys(seed: int = 0, n_train: int = 10_000, n_val: int = 500, n_test: int = 1_000) -> set:
    """The ``scene_key`` of every scene in a dataset that ``generate`` would build (sampled, not rendered)."""
    seen: set = set()
    for split, n in zip(synthetic._SPLIT_ORDER, (n_test, n_val, n_train)):  # as generate draws them
        synthetic._split_scenes(n, np.random.default_rng([seed, synthetic._STREAM[split], 2**31]), seen)
    return seen


def pretraining_scenes(n: int, seed: int, exclude: set | None = None) -> list[tuple[int, dict]]:
    """``n`` (family index, scene) pairs of whole families, none of whose scenes is in ``exclude``."""
    return synthetic._split_scenes(n, np.random.default_rng([seed, 99, 2**31]), set(exclude or ()))


def labelled_scenes(n: int, seed: int, image_size: int = 64, grid: int = 8, exclude: set | None = None,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rendered scenes (whole families) with their ``patch_labels``, none of whose scenes is in ``exclude``.

    For pretraining an image encoder: -> images (n, S, S, 3) uint8, labels (n, len(LABEL_FIELDS),
    grid, grid) int64. Deterministic in (n, seed, image_size, grid, exclude).
    """
    rows = pretraining_scenes(n, seed, exclude)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty((n, len(LABEL_FIELDS), grid, grid), dtype=np.int64)
    for i, (_, scene) in enumerate(tqdm(rows, desc="rendering labelled scenes", unit="img", disable=not progress,
                                        mininterval=0.5)):
        rng = np.random.default_rng([seed, 99, i])
        scene = {**scene, "image_size": image_size, "boxes": synthetic._layout(scene, rng, image_size)}
        images[i] = np.asarray(synthetic.render_scene(scene, rng, image_size))
        labels[i] = patch_labels(scene, grid)
    return images, labels
