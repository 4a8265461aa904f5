"""``python -m hat_min.weights [image | text | all]``: pretrain the offline encoders and write their weights and cards.

    python -m hat_min.weights            # both: 9.5 + 3.8 min on 2 cores with bf16; 25.7 + 12.4 min on 2 cores
                                         # without (an AMD EPYC, fp32; README "the offline default")
    python -m hat_min.weights text --steps 100 --out /tmp/w   # the text file serves the minilm_labelled variant
"""
from __future__ import annotations

import argparse
import json
import sys

from .image import DEFAULT_OUT, pretrain
from .text import pretrain_text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hat_min.weights", description=__doc__.split("\n")[0])
    p.add_argument("what", nargs="?", default="all", choices=["image", "text", "all"],
                   help="which encoder to pretrain (default: both, one after the other)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder of the weights and cards (default: {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 4000 image, 800 text)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    cards = []
    if a.what in ("image", "all"):
        cards.append(pretrain(a.out, steps=a.steps or 4000, seed=a.seed))
    if a.what in ("text", "all"):
        cards.append(pretrain_text(a.out, steps=a.steps or 800, seed=a.seed))
    for card in cards:
        print(json.dumps({"weights": card["name"], "held_out_accuracy": card["held_out"]["accuracy"],
                          "seconds": card["training"]["seconds"], "sha256": card["sha256"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
