"""Where the demo model loses held-out phrasings: test_frames and test_words frame by frame, per kind of swap.

Trains (or loads from ``--cache``) notebook 03's recipe, the demo recipe validated every 100 steps
(``TrainConfig.preset("notebook")`` on the ``minilm`` preset), once per seed on ``--data``, and prints:

- its learning curve on the validation split: within-family accuracy and role swaps at each validation;
- for ``test_frames`` and ``test_words`` (their first ``--images`` images), text-to-image accuracy against
  each kind of swap (colour, texture, size, role, both; two-way, chance 50 %) for the captions of each
  held-out sentence frame (``data_prep.phrasing.frame_of``; F is the top / left group, S the other),
  with whether the group just before the generator's relation phrases is the one they place
  (``data_prep.phrasing.order_rule``), and within-family accuracy (4-way, chance 25 %) for the whole split.

Compare datasets: the default one, and one whose generator also writes frames where the order of the words
no longer tells which group is on top (``python -m data_prep.synthetic --out data/more --more-frames 0.3``);
and on the latter, recipes: longer, a higher rate, or a caption curriculum (``--base-frames-until 0.6``:
``TrainConfig.base_frames_until_accuracy``, the generator's ten base frames only until the running in-batch
accuracy reaches 0.6, i.e. until the roles are found through the order of the words).

    python benchmarks/phrasing.py                                   # data/synthetic, seed 0
    python benchmarks/phrasing.py --data data/more --seeds 0 1
    python benchmarks/phrasing.py --data data/more --max-steps 1000      # a longer run
    python benchmarks/phrasing.py --data data/more --lr 1e-3             # a higher rate
    python benchmarks/phrasing.py --data data/more --base-frames-until 0.6 --seeds 0 1 2   # the curriculum
    python benchmarks/phrasing.py --switch-accuracy 0.25 --seeds 0 1 2 3   # the hardest negative early (before 2026-12-05)
    python benchmarks/phrasing.py --smoke --data DIR                # 2 steps (checks that it runs)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep import PHRASING_SPLITS  # noqa: E402
from data_prep.phrasing import FRAMES, ORDER_RULE_LABELS, frame_of, order_rule  # noqa: E402
from hat_min import HATConfig  # noqa: E402
from hat_min.evaluation.compositional import KINDS  # noqa: E402
from hat_min.evaluation.data import load_splits  # noqa: E402
from hat_min.evaluation.knockout import family_level_scores  # noqa: E402
from hat_min.training import read_metrics  # noqa: E402
from hat_min.training.loop import TrainConfig, train_or_load  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--images", type=int, default=400, help="first N images of each phrasing split (whole families)")
    p.add_argument("--cache", default="runs/phrasing", help="where the runs are kept")
    p.add_argument("--max-steps", type=int, default=None, help="train this many steps instead of the recipe's 400 "
                   "(the last 150 still cool down): does a longer run learn what 400 steps do not?")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate instead of the recipe's 5e-4")
    p.add_argument("--base-frames-until", type=float, default=None, metavar="ACCURACY",
                   help="train on the generator's base frames only until the running in-batch accuracy reaches "
                        "this (a caption curriculum; default: none)")
    p.add_argument("--switch-accuracy", type=float, default=None, metavar="ACCURACY",
                   help="the curriculum's loss (InfoNCE) gives way to HAT's hardest negative when the running "
                        "in-batch accuracy passes this, instead of the recipe's (0.65 since 2026-12-05, 0.25 before)")
    p.add_argument("--smoke", action="store_true", help="2 steps, 8 images (checks that it runs)")
    args = p.parse_args(argv)
    overrides = {"max_steps": 2, "warmup_steps": 1, "cooldown_steps": 1, "val_every": 1, "val_images": 8} \
        if args.smoke else {"max_steps": args.max_steps, "epochs": 10} if args.max_steps else {}
    if args.lr:
        overrides["lr"] = args.lr
    if args.base_frames_until is not None:
        overrides["base_frames_until_accuracy"] = args.base_frames_until
    if args.switch_accuracy is not None:
        overrides["switch_accuracy"] = args.switch_accuracy
    images = 8 if args.smoke else args.images
    splits = load_splits(args.data)
    result = {"data": args.data, "images": images, "runs": {}}
    for seed in args.seeds:
        cfg = TrainConfig.preset("notebook", seed=seed, **overrides)
        model, summary = train_or_load(HATConfig.preset("minilm"), cfg, args.data, cache_dir=args.cache,
                                       progress=False)
        _, curve = read_metrics(Path(summary["out_dir"]) / "metrics.jsonl")  # the validations, in order
        run = {"curve": curve, "splits": {}}
        print(f"\n## seed {seed}: {args.data}\n\nvalidation, within family and role swaps (i2t / t2i, percent):\n")
        print("| step | within family | role swaps |\n|---|---|---|")
        for v in curve:
            print(f"| {v['step']} | {v['family_i2t']:.1f} / {v['family_t2i']:.1f} | "
                  f"{v['family_i2t_role']:.1f} / {v['family_t2i_role']:.1f} |")
        for name in PHRASING_SPLITS:
            split = splits[name].select(range(min(images, len(splits[name]))))
            scores = family_level_scores(model, split)
            texts = [c for caps in split["captions"] for c in caps]
            table = scores.caption_groups([frame_of(t) for t in texts], tuple(range(len(scores.weights))))
            table = {frame: table[frame] for frame in FRAMES if frame in table}  # the grammar's order
            whole = scores.metrics(tuple(range(len(scores.weights))))
            run["splits"][name] = {"frames": table, "family_i2t": whole["family_i2t"],
                                   "family_t2i": whole["family_t2i"]}
            print(f"\n### {name}, first {len(split)} images: within family {whole['family_i2t']:.1f} / "
                  f"{whole['family_t2i']:.1f} % (i2t / t2i); by frame, t2i against each kind of swap (percent)\n")
            print("| frame | group just before the relation | captions | " + " | ".join(KINDS) + " |\n|---|---|---|"
                  + "---|" * len(KINDS))
            for frame, row in table.items():
                cells = [f"{row[k]:.1f}" if k in row else "-" for k in KINDS]
                before = ORDER_RULE_LABELS[order_rule(frame)]
                print(f"| `{frame}` | {before} | {row['captions']} | " + " | ".join(cells) + " |")
        result["runs"][seed] = run
    return result


if __name__ == "__main__":
    main()
