"""Loaders: pairs for training, ordered images and captions for evaluation, flips, colour modes."""
import io

import datasets
import pytest
import torch
from PIL import Image

from data_prep import BASE_FEATURES
from data_prep.synthetic import flip_caption, generate
from hat_min.config import HATConfig
from hat_min.evaluation.data import EvalImages, eval_captions, eval_image_loader, image_transform, load_splits, tokenize
from hat_min.training.data import EpochBatches, TrainPairs, train_loader
from hat_min.encoders import load_tokenizer

CFG = HATConfig.preset("tiny")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "ds"
    generate(n_train=16, n_val=8, n_test=8, seed=3, progress=False).save_to_disk(str(path))
    return load_splits(path)


def test_missing_dataset_names_the_offline_builder(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data_prep.synthetic --out"):
        load_splits(tmp_path / "nothing")


def test_train_pairs_cover_every_caption(splits):
    pairs = TrainPairs(splits["train"], CFG.replace(train_hflip=False))
    assert len(pairs) == 5 * len(splits["train"])
    image, caption, image_id = pairs[7]  # row 1, caption 2
    assert image.shape == (3, 64, 64) and caption == splits["train"][1]["captions"][2]
    assert image_id == splits["train"][1]["image_id"]


def test_base_frames_only_writes_base_frame_captions_of_the_same_scene_for_the_more_frames():
    import json

    from data_prep.captions import in_more_frame, parse_caption

    split = generate(n_train=16, n_val=4, n_test=4, seed=3, progress=False, more_frames=0.5)["train"]
    caps, scenes = split["captions"], [json.loads(s) for s in split["scene"]]
    pairs = TrainPairs(split, CFG.replace(train_hflip=False))
    everything = [pairs[(i, 1000 + i)][1] for i in range(len(pairs))]
    pairs.base_frames_only = True
    base = [pairs[(i, 1000 + i)][1] for i in range(len(pairs))]
    assert sum(in_more_frame(c) for c in everything) >= 10  # something to replace
    written = 0
    for i, (before, after) in enumerate(zip(everything, base)):
        row = i // 5
        assert not in_more_frame(after) and parse_caption(after) == parse_caption(caps[row][0])  # same scene
        assert parse_caption(after) == {k: scenes[row][k] for k in ("relation", "subject", "object")}
        if not in_more_frame(before):
            assert after == before  # a base-frame caption is kept
        else:
            written += after not in caps[row]
    assert written >= 5  # new captions, not the image's own
    assert base == [pairs[(i, 1000 + i)][1] for i in range(len(pairs))]  # the seed fixes the words
    assert base != [pairs[(i, 2000 + i)][1] for i in range(len(pairs))]  # another epoch's seeds, other words
    pairs.base_frames_only = False
    assert [pairs[(i, 1000 + i)][1] for i in range(len(pairs))] == everything


def test_base_frames_only_without_scene_records_uses_the_images_own_base_frame_captions():
    from data_prep.captions import in_more_frame

    split = generate(n_train=16, n_val=4, n_test=4, seed=3, progress=False, more_frames=0.5)["train"]
    split = split.remove_columns("scene")  # as a real dataset: captions only
    caps = split["captions"]
    pairs = TrainPairs(split, CFG.replace(train_hflip=False))
    everything = [pairs[i][1] for i in range(len(pairs))]
    pairs.base_frames_only = True
    base = [pairs[i][1] for i in range(len(pairs))]
    assert any(in_more_frame(c) for c in everything)  # something to replace
    for i, (before, after) in enumerate(zip(everything, base)):
        row = i // 5
        assert after in caps[row]  # always a caption of the same image
        if not in_more_frame(before):
            assert after == before  # a base-frame caption is kept
        elif any(not in_more_frame(c) for c in caps[row]):
            assert not in_more_frame(after)
        else:
            assert after == before  # an image with no base-frame caption keeps its own
    assert base == [pairs[i][1] for i in range(len(pairs))]  # the same replacement every time


@pytest.mark.parametrize("preload", [True, False])
def test_flip_moves_pixels_and_words_together(splits, monkeypatch, preload):
    split = splits["train"]
    row = next(i for i, caps in enumerate(split["captions"]) if any("left" in c or "right" in c for c in caps))
    k = next(k for k, c in enumerate(split[row]["captions"]) if "left" in c or "right" in c)
    index = 5 * row + k
    plain = TrainPairs(split, CFG.replace(train_hflip=False), preload=preload)[index]
    pairs = TrainPairs(split, CFG.replace(train_hflip=True), preload=preload)
    if not preload:  # decoded per item: the seeded RNG decides (and the crop, when there is one)
        monkeypatch.setattr(torch, "rand", lambda *a, **kw: torch.tensor(0.0))  # always flip
    flipped = pairs[(index, 1)]  # preloaded: the seed's lowest bit decides, 1 flips
    torch.testing.assert_close(flipped[0], plain[0].flip(-1))
    assert flipped[1] == flip_caption(plain[1]) != plain[1]
    if preload:
        kept = pairs[(index, 2)]
        torch.testing.assert_close(kept[0], plain[0])
        assert kept[1] == plain[1]


def test_the_release_flips_pixels_only(splits):
    """hflip_swaps_left_right=False (the paper preset, as released): the image flips, the caption stays."""
    split = splits["train"]
    row = next(i for i, caps in enumerate(split["captions"]) if any("left" in c or "right" in c for c in caps))
    index = 5 * row + next(k for k, c in enumerate(split[row]["captions"]) if "left" in c or "right" in c)
    cfg = CFG.replace(train_hflip=True, hflip_swaps_left_right=False)
    plain = TrainPairs(split, cfg.replace(train_hflip=False), preload=True)[index]
    flipped = TrainPairs(split, cfg, preload=True)[(index, 1)]
    torch.testing.assert_close(flipped[0], plain[0].flip(-1))
    assert flipped[1] == plain[1] and ("left" in plain[1] or "right" in plain[1])
    assert HATConfig.preset("paper").hflip_swaps_left_right is False and CFG.hflip_swaps_left_right is True


def test_preloaded_flips_follow_the_seed_and_are_a_fair_coin(splits):
    pairs = TrainPairs(splits["train"], CFG.replace(train_hflip=True), preload=True)
    plain = TrainPairs(splits["train"], CFG.replace(train_hflip=False), preload=True)
    keys = [key for epoch in range(5) for batch in EpochBatches(len(pairs), 8, seed=0, epoch=epoch) for key in batch]
    for index, seed in keys[:40]:
        image = plain[index][0]
        torch.testing.assert_close(pairs[(index, seed)][0], image.flip(-1) if seed & 1 else image)
    share = sum(seed & 1 for _, seed in keys) / len(keys)  # 400 seeds
    assert 0.4 < share < 0.6, share


def test_train_loader_batches(splits):
    loader = train_loader(splits["train"], CFG, batch_size=8, workers=0)
    batch = next(iter(loader))
    assert batch["images"].shape == (8, 3, 64, 64)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 8 and ids.shape[1] <= CFG.max_text_len
    assert (ids[:, 0] == 101).all() and all(ids[b, mask[b].sum() - 1] == 102 for b in range(8))
    assert len(loader) == 5 * 16 // 8
    assert torch.isin(batch["image_ids"], torch.tensor(splits["train"]["image_id"])).all()


def test_train_loader_with_a_worker_is_seeded(splits):
    first = [next(iter(train_loader(splits["train"], CFG, 4, workers=1, seed=5)))["input_ids"] for _ in range(2)]
    torch.testing.assert_close(first[0], first[1])


def test_eval_order_caption_j_belongs_to_image_j_div_5(splits):
    test = splits["test"]
    captions = eval_captions(test)
    assert len(captions) == 5 * len(test)
    for j in (0, 4, 5, 17, len(captions) - 1):
        assert captions[j] in test[j // 5]["captions"]
    images = torch.cat(list(eval_image_loader(test, CFG, batch_size=3, workers=0)))
    assert images.shape == (len(test), 3, 64, 64)
    torch.testing.assert_close(images[5], EvalImages(test, CFG)[5])


def test_eval_needs_enough_captions():
    ds = datasets.Dataset.from_dict({"captions": [["a", "b", "c", "d", "e"], ["only", "two"]]})
    with pytest.raises(ValueError, match="fewer than 5 captions"):
        eval_captions(ds)
    assert eval_captions(ds, captions_per_image=2) == ["a", "b", "only", "two"]


def test_tokenize_truncates_to_max_len():
    ids, mask = tokenize(load_tokenizer(CFG), ["a " * 100, "a red circle"], CFG.max_text_len)
    assert ids.shape == (2, 32) and ids[0, -1] == 102 and mask[1].sum() == 5


def _png(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_unusual_colour_modes_and_shapes_become_rgb_tensors():
    images = [Image.new("L", (50, 80), 128), Image.new("RGBA", (64, 64), (255, 0, 0, 0)),
              Image.new("I;16", (40, 40), 40000), Image.new("P", (3, 300)), Image.new("1", (70, 20), 1)]
    cmyk = _png(Image.new("CMYK", (30, 30), (0, 255, 0, 0)), "JPEG")
    blobs = [_png(im) for im in images] + [cmyk]
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in blobs], "captions": [["x"] * 5] * len(blobs),
         "image_id": list(range(len(blobs))), "filename": [f"{i}.png" for i in range(len(blobs))]},
        features=BASE_FEATURES)
    for cfg in (CFG, HATConfig.preset("paper")):
        out = [EvalImages(ds, cfg)[i] for i in range(len(ds))]
        assert all(t.shape == (3, cfg.image_size, cfg.image_size) and torch.isfinite(t).all() for t in out)
    pixels = EvalImages(ds, CFG)[2] * torch.tensor(CFG.image_std)[:, None, None] + torch.tensor(CFG.image_mean)[:, None, None]
    assert pixels.amax() - pixels.amin() < 0.01  # 16-bit 40000 of 65535: one flat grey...
    assert 0.5 < pixels.mean() < 0.7  # ...rescaled to about 0.61, not clipped to white


def test_paper_transforms_follow_the_protocol():
    train, evaluation = image_transform(HATConfig.preset("paper"), True), image_transform(HATConfig.preset("paper"), False)
    assert "RandomResizedCrop" in repr(train) and "scale=(0.08, 1.0)" in repr(train)
    assert "Resize(size=256" in repr(evaluation) and "CenterCrop(size=(224, 224))" in repr(evaluation)
    assert image_transform(CFG, True)(Image.new("RGB", (64, 64))).shape == (3, 64, 64)


def test_a_training_step_from_the_loader(splits):
    from hat_min import HAT

    torch.manual_seed(0)
    model = HAT(CFG)
    batch = next(iter(train_loader(splits["train"], CFG, batch_size=6, workers=0)))
    _, loss = model(batch["images"], batch["input_ids"], batch["attention_mask"], batch["image_ids"])
    loss.backward()
    assert torch.isfinite(loss) and model.text_proj[0].weight.grad is not None


def test_epoch_batches_resume_and_split_over_processes():
    from hat_min.training.data import EpochBatches

    full = list(EpochBatches(50, 8, seed=1, epoch=2))
    assert len(full) == 6 and all(len(b) == 8 for b in full)  # the last partial batch is dropped
    assert list(EpochBatches(50, 8, seed=1, epoch=2, start=4)) == full[4:]  # resumable without replay
    assert list(EpochBatches(50, 8, seed=1, epoch=3)) != full  # a new order every epoch
    halves = [list(EpochBatches(50, 8, seed=1, epoch=2, rank=r, world=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == full  # ranks hold consecutive slices of the global batch
    with pytest.raises(ValueError, match="does not split"):
        EpochBatches(50, 9, seed=1, epoch=0, world=2)


def test_seeded_samples_are_reproducible(splits):
    pairs = TrainPairs(splits["train"], CFG.replace(train_crop_scale=(0.3, 1.0)))
    a, b = pairs[(3, 12345)], pairs[(3, 12345)]
    torch.testing.assert_close(a[0], b[0])
    assert a[1] == b[1]
    assert any(not torch.equal(a[0], pairs[(3, s)][0]) for s in range(5))  # other seeds, other crops


def test_family_batches_hold_whole_families_and_every_pair_once(splits):
    from hat_min.training.data import EpochBatches

    pairs = TrainPairs(splits["train"], CFG)
    families = pairs.families()
    assert len(families) == 4 and all(len(f) == 4 for f in families)  # 16 images in families of four
    batches = list(EpochBatches(len(pairs), 8, seed=0, epoch=0, families=families))
    flat = [i for b in batches for i, _ in b]
    assert sorted(flat) == list(range(len(pairs)))  # an epoch still uses every pair exactly once
    for batch in batches:  # 8 pairs = 2 whole families, each image once
        rows = [pairs.pairs[i][0] for i, _ in batch]
        assert len(set(rows)) == 8
        fams = [pairs.family_of_row[r] for r in rows]
        assert all(fams.count(f) == 4 for f in set(fams))
    again = list(EpochBatches(len(pairs), 8, seed=0, epoch=0, start=3, families=families))
    assert again == batches[3:]


def test_family_batches_flip_whole_families(splits):
    # a flipped "left of" scene is its own role swap: one flip for every member of a family
    from hat_min.training.data import EpochBatches

    pairs = TrainPairs(splits["train"], CFG)
    flips_seen = set()
    for epoch in range(4):
        for batch in EpochBatches(len(pairs), 8, seed=0, epoch=epoch, families=pairs.families()):
            by_family = {}
            for index, seed in batch:
                by_family.setdefault(pairs.family_of_row[pairs.pairs[index][0]], set()).add(seed & 1)
            assert all(len(coins) == 1 for coins in by_family.values())
            flips_seen |= {c for coins in by_family.values() for c in coins}
            image, caption, _ = pairs[batch[0]]  # the item follows its seed's coin
            row, k = pairs.pairs[batch[0][0]]
            assert (caption != pairs.captions[row][k]) <= bool(batch[0][1] & 1)
    assert flips_seen == {0, 1}  # families are flipped, and not always


def test_splits_without_families_fall_back_to_random_batches():
    ds = datasets.Dataset.from_dict({"image": [{"bytes": _png(Image.new("RGB", (64, 64))), "path": None}] * 2,
                                     "captions": [["a"] * 5] * 2, "image_id": [0, 1], "filename": ["a", "b"]},
                                    features=BASE_FEATURES)
    pairs = TrainPairs(ds, CFG)
    assert pairs.families() is None
    loader = train_loader(ds, CFG, 4, workers=0, by_family=True)
    assert len(next(iter(loader))["image_ids"]) == 4 and not loader.batch_sampler.by_family


def test_decoding_shows_a_progress_bar_only_when_asked_and_large(monkeypatch):
    """train_or_load(progress=False) in a notebook must leave no "decoding images" bar, however large the split."""
    import hat_min.training.data as data

    seen = []

    def recording_tqdm(iterable, **kwargs):
        seen.append(kwargs["disable"])
        return iterable

    monkeypatch.setattr(data, "tqdm", recording_tqdm)
    split = generate(n_train=4, n_val=4, n_test=4, progress=False)["train"]
    cfg = HATConfig.preset("tiny")
    TrainPairs(split, cfg, preload=True, progress=False)
    TrainPairs(split, cfg, preload=True)
    monkeypatch.setattr(data, "len", lambda _: 6000, raising=False)  # as if the split had 6,000 images
    TrainPairs(split, cfg, preload=True, progress=False)
    data._decode_all(split, cfg, progress=True)
    assert seen == [True, True, True, False]
