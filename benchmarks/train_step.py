"""Where a CPU training step of the demo goes, and what the text encoder's attention implementation costs.

One step of ``make demo``'s recipe (the ``minilm`` model, batches of 64 pairs made of whole families, every layer
of MiniLM but its embeddings training, the hardest-negative hinge plus the pooled InfoNCE), timed part by part:
image encoding, text encoding, the score and loss, backward, the optimiser step. Two variants alternate in one
process on the same batches, so that a machine whose speed drifts between minutes (these shared 2-core machines
do, by 20-30 %) moves both alike:

- ``eager``: MiniLM's attention as ``hat_min.encoders.BertLayers`` runs it on a CPU (``CPU_ATTENTION``);
- ``sdpa``: transformers' default, PyTorch's fused ``scaled_dot_product_attention``, whose CPU kernel is slow
  to differentiate at a caption's length (26 tokens).

    python benchmarks/train_step.py                  # 3 rounds of 4 steps per variant: about a minute on 2 cores
    python benchmarks/train_step.py --rounds 5 --json step.json
    python benchmarks/train_step.py --smoke          # 1 round of 2 steps (checks that it runs)

Prints a Markdown table (seconds a step, mean over the timed steps; the first step of each variant is not timed)
and the ratio of the two steps. The weights learn at a tiny rate, so that every step sees a model like the last.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hat_min import HAT, HATConfig  # noqa: E402
from hat_min import encoders  # noqa: E402
from hat_min.evaluation.data import load_splits  # noqa: E402
from hat_min.training import TrainConfig  # noqa: E402
from hat_min.training.data import TrainPairs, train_loader  # noqa: E402
from hat_min.training.loop import _set_backbones_trainable  # noqa: E402

PARTS = ("image", "text", "score+loss", "backward", "optimiser")
VARIANTS = ("eager", "sdpa")


def step(model: HAT, optimizer, batch: dict, recipe: TrainConfig) -> dict[str, float]:
    """One optimiser step of ``recipe``'s loss after its curriculum switch; seconds per part."""
    times, tick = {}, time.perf_counter()

    def lap(name):
        nonlocal tick
        now = time.perf_counter()
        times[name], tick = now - tick, now

    optimizer.zero_grad(set_to_none=True)
    image = model.encode_image(batch["images"])
    lap("image")
    text = model.encode_text(batch["input_ids"], batch["attention_mask"])
    lap("text")
    _, loss = model.objective(image, text, batch["attention_mask"], batch["image_ids"], negatives=recipe.end_loss,
                              pooled_weight=recipe.global_loss_weight, pooled_temperature=recipe.global_temperature)
    lap("score+loss")
    loss.backward()
    lap("backward")
    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    optimizer.step()
    lap("optimiser")
    return times


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="the generated dataset (made on first use)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each runs every variant on the same batches")
    p.add_argument("--steps", type=int, default=4, help="steps per variant and round")
    p.add_argument("--smoke", action="store_true", help="1 round of 2 steps")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    rounds, steps = (1, 2) if args.smoke else (args.rounds, args.steps)
    if rounds < 1 or steps < 1:
        p.error("--rounds and --steps must be at least 1")

    from data_prep.synthetic import ensure_default

    torch.manual_seed(0)
    config, recipe = HATConfig.preset("minilm"), TrainConfig.preset("demo")
    model = HAT(config)
    _set_backbones_trainable(model, True, recipe.freeze_text, recipe.text_train_layers)
    model.train()
    model.text_encoder.eval()  # the recipe's frozen-text mode: no dropout
    pairs = TrainPairs(load_splits(ensure_default(args.data))["train"], config)
    loader = train_loader(pairs, config, recipe.batch_size, by_family=True, workers=0)
    batches = [b for _, b in zip(range(steps), loader)]
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-7)
    timed, chosen = {v: [] for v in VARIANTS}, encoders.CPU_ATTENTION
    try:
        for r in range(rounds):
            for variant in VARIANTS:
                encoders.CPU_ATTENTION = variant  # BertLayers switches on its next call
                for k, batch in enumerate(batches):
                    times = step(model, optimizer, batch, recipe)
                    if r or k or rounds * steps == 1:  # each variant's first step warms up
                        timed[variant].append(times)
    finally:
        encoders.CPU_ATTENTION = chosen
    mean = {v: {part: sum(t[part] for t in ts) / len(ts) for part in PARTS} for v, ts in timed.items()}
    for m in mean.values():
        m["step"] = sum(m[part] for part in PARTS)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, batch "
          f"{recipe.batch_size}, tokens per caption {batches[0]['input_ids'].shape[1]}, steps timed per variant "
          f"{len(timed['eager'])}\n")
    print("| MiniLM attention | " + " | ".join(PARTS) + " | step s |")
    print("|---" * (len(PARTS) + 2) + "|")
    for v in VARIANTS:
        print(f"| {v} | " + " | ".join(f"{mean[v][part]:.3f}" for part in (*PARTS, "step")) + " |")
    ratio = mean["sdpa"]["step"] / mean["eager"]["step"]
    print(f"\nsdpa / eager, whole step: {ratio:.2f}x")
    result = {"mean_s": mean, "sdpa_over_eager": ratio, "steps_timed": len(timed["eager"]),
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
