"""What makes the offline demo model bind: `make demo`'s recipe with one thing changed, on every test split, per level.

Each variant is trained once with the demo recipe (``TrainConfig.preset("demo")`` on the
``minilm`` preset, cached under ``--cache``) and scored on the generated test split and on each
generalisation split (``test_unseen``: held-out attribute combinations; ``test_frames`` /
``test_words``: the test images in held-out phrasings): Recall@1, the share of top-1 results in
the right family, within-family accuracy (4-way, chance 25 %), two-way accuracy by kind of swap
(chance 50 %) and Winoground's group score (chance 16.7 %), each as "i2t / t2i" where it has two
directions. The same model's pooled embeddings are listed under each variant; the default
model's levels are also scored alone (which level carries what); the bag-of-words reference and
chance close each table. Prints one Markdown table per split.

    python benchmarks/binding.py                                  # every variant, seed 0
    python benchmarks/binding.py --variants demo --seeds 0 1 2    # how much a re-run moves
    python benchmarks/binding.py --variants demo --splits test test_frames
    python benchmarks/binding.py --variants "previous demo" "top 3 text layers train"   # the optional ones
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep import GENERALISATION_SPLITS  # noqa: E402
from hat_min import HATConfig  # noqa: E402
from hat_min.evaluation.compositional import (KINDS, bag_of_words_similarity, family_accuracy,  # noqa: E402
                                              family_chance, family_labels, winoground_scores)
from hat_min.evaluation.data import load_splits  # noqa: E402
from hat_min.evaluation.protocols import encode, global_embeddings, level_similarity  # noqa: E402
from hat_min.metrics import recall_at_k  # noqa: E402
from hat_min.training.loop import TrainConfig, train_or_load  # noqa: E402

# name: (HATConfig overrides, TrainConfig overrides) on top of the minilm preset and the demo recipe
VARIANTS = {
    "demo": ({}, {}),
    # MiniLM's layers 4-6 pretrained to label each word's group and place: the answer handed over
    "place-labelled text (minilm_labelled)": ({"text_weights": "scenes_minilm"}, {}),
    "region positions from N(0, 0.02)": ({"region_position_init": "normal"}, {}),
    "no region position": ({"region_position": False}, {}),
    "Swin from scratch (no image pretraining)": ({"image_weights": None}, {}),
    "random batches (no family batches)": ({}, {"batch_by_family": "never"}),
    # only MiniLM's top three layers train (its layers 1-3 stay as shipped): cheaper steps; do the roles still come?
    "top 3 text layers train": ({}, {"text_train_layers": 3}),
    # the demo as it was before the pretrained encoders (2026-11-27): all of the above left out, 781 steps
    "previous demo": ({"image_weights": None, "text_weights": None, "region_position": False},
                      {"batch_by_family": "never", "max_steps": None, "cooldown_steps": 250, "text_train_layers": 0}),
}
SPLITS = ("test", *GENERALISATION_SPLITS)
OPTIONAL = ("top 3 text layers train", "previous demo")  # run only when named (--variants)


def scores(model, test) -> dict:
    """Metrics of the model's HAT score, of each of its levels alone, and of its pooled embeddings."""
    encoded = encode(model, test, progress=False)
    cfg = model.config
    per_level = [level_similarity(cfg, encoded, level, progress=False) for level in range(len(cfg.levels))]
    total = sum(w * s for w, s in zip(cfg.weights, per_level))
    img, cap = global_embeddings(encoded)
    out = {"HAT (all levels)": total, "pooled embeddings": img @ cap.T}
    out.update({f"level {i + 1} alone (stage {s}, layer {t})": sims
                for i, ((s, t), sims) in enumerate(zip(cfg.levels, per_level))})
    return out


def row(name: str, sims, labels) -> list[str]:
    r = {**recall_at_k(sims), **family_accuracy(sims, labels), **winoground_scores(sims, labels)}
    return _cells(name, r)


def _cells(name: str, r: dict) -> list[str]:
    pair = lambda key: f"{r[f'{key}_i2t']:.1f} / {r[f'{key}_t2i']:.1f}"  # noqa: E731
    kinds = [f"{r[f'family_i2t_{k}']:.1f} / {r[f'family_t2i_{k}']:.1f}" for k in KINDS]
    return [name, f"{r['i2t_r1']:.1f} / {r['t2i_r1']:.1f}", pair("in_family"), pair("family"), *kinds,
            f"{r['winoground_group']:.1f}"]


def chance_row(labels, n_images: int) -> list[str]:
    """A random scorer (R@1 of one image among ``n_images``; each caption has one image)."""
    return _cells("chance", {"i2t_r1": 100 / n_images, "t2i_r1": 100 / n_images, **family_chance(labels)})


def markdown(rows: list[list[str]]) -> str:
    head = ["variant (i2t / t2i)", "R@1", "top-1 in family", "within family",
            *(k if k in ("role", "both") else f"{k} binding" for k in KINDS), "Winoground group"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--variants", nargs="*", default=[v for v in VARIANTS if v not in OPTIONAL],
                   choices=list(VARIANTS), metavar="NAME")
    p.add_argument("--splits", nargs="*", default=list(SPLITS), choices=list(SPLITS), metavar="SPLIT")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--cache", default="runs/binding", help="where the variants' runs are kept")
    a = p.parse_args(argv)
    from data_prep.synthetic import ensure_default

    ensure_default(a.data)
    splits = load_splits(a.data)
    tests = {name: (splits[name], family_labels(splits[name])) for name in a.splits}
    rows = {name: [] for name in a.splits}
    for name in a.variants:
        model_over, train_over = VARIANTS[name]
        for seed in a.seeds:
            started = time.monotonic()
            model, _ = train_or_load(HATConfig.preset("minilm", **model_over),
                                     TrainConfig.preset("demo", seed=seed, **train_over), a.data, a.cache)
            label = f"{name}, seed {seed}" if len(a.seeds) > 1 else name
            for split, (test, labels) in tests.items():
                for what, sims in scores(model.eval(), test).items():
                    if what.startswith("level") and name != "demo":
                        continue
                    rows[split].append(row(f"{label}: {what}", sims, labels))
            print(f"{name}, seed {seed}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    for split, (test, labels) in tests.items():
        rows[split].append(row("bag of words (reference)", bag_of_words_similarity(test), labels))
        rows[split].append(chance_row(labels, len(test)))
        print(f"\n### {split} ({len(test)} images)\n\n{markdown(rows[split])}")


if __name__ == "__main__":
    main()
