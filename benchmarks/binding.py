"""What makes the offline demo model bind: `make demo`'s recipe with one thing changed, each kind of swap, per level.

Each variant is trained once with the demo recipe (``TrainConfig.preset("demo")`` on the
``minilm`` preset, cached under ``--cache``; about 4-5 minutes on two cores) and scored on the
generated test split: Recall@1, the share of top-1 results in the right family, within-family
accuracy (4-way, chance 25 %) and two-way accuracy by kind of swap (chance 50 %), each as
"i2t / t2i". The same model's pooled embeddings and the bag-of-words reference are listed
under each variant; for the demo recipe each level is also scored alone (which levels carry
the binding). Prints Markdown tables.

    python benchmarks/binding.py                                  # every variant, seed 0
    python benchmarks/binding.py --variants demo --seeds 0 1 2    # how much a re-run moves
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hat_min import HATConfig  # noqa: E402
from hat_min.evaluation.compositional import KINDS, bag_of_words_similarity, family_accuracy, family_labels  # noqa: E402
from hat_min.evaluation.data import load_splits  # noqa: E402
from hat_min.evaluation.protocols import Encoded, encode, global_embeddings, similarity  # noqa: E402
from hat_min.metrics import recall_at_k  # noqa: E402
from hat_min.training.loop import TrainConfig, train_or_load  # noqa: E402

# name: (HATConfig overrides, TrainConfig overrides) on top of the minilm preset and the demo recipe
VARIANTS = {
    "demo": ({}, {}),
    "no region position": ({"region_position": False}, {}),
    "MiniLM as shipped (no text pretraining)": ({"text_weights": None}, {}),
    "Swin from scratch (no image pretraining)": ({"image_weights": None}, {}),
    "random batches (no family batches)": ({}, {"batch_by_family": "never"}),
    # the demo as it was before the pretrained encoders (2026-11-27): all of the above left out, 781 steps
    "previous demo": ({"image_weights": None, "text_weights": None, "region_position": False},
                      {"batch_by_family": "never", "max_steps": None, "cooldown_steps": 250}),
}


def scores(model, test) -> dict:
    """Metrics of the model's HAT score, of each of its levels alone, and of its pooled embeddings."""
    encoded = encode(model, test, progress=False)
    cfg = model.config
    per_level = []
    for level, (image, text) in enumerate(zip(encoded.image_levels, encoded.text_levels)):
        one = Encoded([image], [text], encoded.mask, encoded.captions_per_image)
        per_level.append(similarity(cfg.replace(levels=(cfg.levels[level],), level_weights=None), one, progress=False))
    total = sum(w * s for w, s in zip(cfg.weights, per_level))
    img, cap = global_embeddings(encoded)
    out = {"HAT (all levels)": total, "pooled embeddings": img @ cap.T}
    out.update({f"level {i + 1} alone (stage {s}, layer {t})": sims
                for i, ((s, t), sims) in enumerate(zip(cfg.levels, per_level))})
    return out


def row(name: str, sims, labels) -> list[str]:
    r = {**recall_at_k(sims), **family_accuracy(sims, labels)}
    pair = lambda key: f"{r[f'{key}_i2t']:.1f} / {r[f'{key}_t2i']:.1f}"  # noqa: E731
    kinds = [f"{r[f'family_i2t_{k}']:.1f} / {r[f'family_t2i_{k}']:.1f}" for k in KINDS]
    return [name, f"{r['i2t_r1']:.1f} / {r['t2i_r1']:.1f}", pair("in_family"), pair("family"), *kinds]


def markdown(rows: list[list[str]]) -> str:
    head = ["variant (i2t / t2i)", "R@1", "top-1 in family", "within family",
            *(k if k in ("role", "both") else f"{k} binding" for k in KINDS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--cache", default="runs/binding", help="where the variants' runs are kept")
    a = p.parse_args(argv)
    from data_prep.synthetic import ensure_default

    ensure_default(a.data)
    test = load_splits(a.data)["test"]
    labels = family_labels(test)
    rows = []
    for name in a.variants:
        model_over, train_over = VARIANTS[name]
        for seed in a.seeds:
            started = time.monotonic()
            model, _ = train_or_load(HATConfig.preset("minilm", **model_over),
                                     TrainConfig.preset("demo", seed=seed, **train_over), a.data, a.cache)
            for what, sims in scores(model.eval(), test).items():
                if what.startswith("level") and name != "demo":
                    continue
                label = f"{name}, seed {seed}" if len(a.seeds) > 1 else name
                rows.append(row(f"{label}: {what}", sims, labels))
            print(f"{name}, seed {seed}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    rows.append(row("bag of words (reference)", bag_of_words_similarity(test), labels))
    print(markdown(rows))


if __name__ == "__main__":
    main()
