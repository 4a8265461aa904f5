"""Command line: ``python -m hat_min {train, evaluate, demo}``; ``--help`` on each explains every option.

    python -m hat_min demo                                        # data, training, evaluation: minutes on a CPU
    python -m hat_min train --preset tiny --data data/synthetic --out runs/tiny
    python -m hat_min train --preset tiny --data data/synthetic --out runs/tiny --resume
    python -m hat_min evaluate --checkpoint runs/tiny/best --data data/synthetic
    python -m hat_min evaluate --checkpoint runs/tiny/best --data data/synthetic --rerank-k 32
    torchrun --nproc_per_node 2 -m hat_min train --preset tiny --data data/synthetic --out runs/ddp

Expected failures (offline hub, missing data, a bad option) end with one line on stderr and
exit code 2, not a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


def _summary(metrics: dict) -> dict:
    """The last line's numbers: Recall@K, rSum and (on splits with families) every family metric, rounded."""
    keys = [*RECALL_KEYS, *(k for k in metrics if k.startswith(("family_", "in_family_")))]
    return {k: round(metrics[k], 2) for k in keys}


def _print_tables(rows: dict) -> None:
    """The Recall@K table and, where the split has families, the within-family table."""
    from .tables import format_family_table, format_table

    print(format_table(rows))
    family = format_family_table(rows)
    if family:
        print("\nWithin-family accuracy (the right one of 4 scenes with the same words; chance 25 %), and two-way "
              "by kind of swap (chance 50 %):")
        print(family)


def _parse_value(text: str):
    """A --set value: JSON when it parses (numbers, lists, true), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(pairs: list[str], cls) -> dict:
    """``["lr=1e-3", "levels=[[4,4]]"]`` -> {field: value}, checked against the dataclass ``cls``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        out[key] = _parse_value(value)
    return out


def _configs(args):
    from .config import HATConfig
    from .train import TrainConfig

    model_sets = [s for s in args.set if s.partition("=")[0] in {f.name for f in dataclasses.fields(HATConfig)}]
    train_sets = [s for s in args.set if s not in model_sets]
    model_cfg = HATConfig.preset(args.preset, **_overrides(model_sets, HATConfig))
    train_cfg = TrainConfig.preset(args.train_preset, **_overrides(train_sets, TrainConfig))
    return model_cfg, train_cfg


def cmd_train(args) -> dict:
    from .train import train

    model_cfg, train_cfg = _configs(args)
    _, summary = train(model_cfg, train_cfg, args.data, args.out, resume=args.resume, device=args.device)
    print(json.dumps(summary))
    return summary


def cmd_evaluate(args) -> dict:
    from .data import load_splits
    from .evaluate import evaluate
    from .model import HAT
    from .retrieval import rerank_evaluate

    if args.rerank_k is not None and args.ensemble:
        raise ValueError("--rerank-k scores one model; leave out --ensemble (ensembles are scored in full)")
    if args.rerank_k is not None and args.rerank_k < 1:
        raise ValueError(f"--rerank-k must be >= 1, got {args.rerank_k}")
    models = [HAT.from_pretrained(path) for path in [args.checkpoint, *args.ensemble]]
    split = load_splits(args.data)[args.split]
    name = f"{Path(args.checkpoint).name} ({args.protocol})"
    if args.rerank_k is None:
        metrics = evaluate(models if len(models) > 1 else models[0], split, protocol=args.protocol,
                           device=args.device, batch_size=args.batch_size, baselines=True)
    else:
        metrics = rerank_evaluate(models[0], split, args.rerank_k, args.protocol, device=args.device,
                                  batch_size=args.batch_size)
        info = metrics["info"]
        name = f"{Path(args.checkpoint).name} ({args.protocol}, rerank top-{args.rerank_k})"
        print(f"cross-attention on {info['xattn_pairs']:,} of {info['full_pairs']:,} pairs "
              f"({info['full_pairs'] / max(1, info['xattn_pairs']):.0f}x fewer); first stage "
              f"{info['first_stage_s']:.2f} s, reranking {info['rerank_s']:.2f} s")
    references = metrics.get("baselines", {})
    _print_tables({name: metrics, **{f"{ref} (reference)": m for ref, m in references.items()}})
    line = {**_summary(metrics), "xattn_pairs": metrics["xattn_pairs"]}
    if references:
        line["baselines"] = {ref: _summary(m) for ref, m in references.items()}
    print(json.dumps(line))
    return metrics


def cmd_demo(args) -> dict:
    from data_prep.synthetic import ensure_default

    from .config import HATConfig
    from .data import load_splits
    from .evaluate import evaluate
    from .train import TrainConfig, train
    from .viz import save_retrieval_examples

    started = time.monotonic()
    data = ensure_default(args.data)
    model_cfg = HATConfig.preset(args.preset)
    train_cfg = TrainConfig.preset("demo", **({"max_steps": args.max_steps} if args.max_steps else {}))
    model, summary = train(model_cfg, train_cfg, data, args.out, device=args.device)
    test = load_splits(data)["test"]
    metrics = evaluate(model, test, device=args.device, return_sims=True, baselines=True)
    picture = save_retrieval_examples(test, metrics["sims"], Path(args.out) / "retrievals.png")
    references = {f"{ref} (reference)": m for ref, m in metrics["baselines"].items()}
    _print_tables({f"HAT {args.preset}, generated test split ({len(test)} images)": metrics, **references})
    print(f"trained {summary['steps']} steps; retrievals drawn in {picture}; "
          f"{time.monotonic() - started:.0f} s in all")
    result = _summary(metrics)
    result["baselines"] = {ref: _summary(m) for ref, m in metrics["baselines"].items()}
    result.update(checkpoint=str(Path(args.out) / "best"), data=str(data), seconds=round(time.monotonic() - started))
    print(json.dumps(result))
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hat_min", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a HAT model")
    t.add_argument("--preset", default="tiny", help="model preset: tiny, minilm or paper (default: tiny)")
    t.add_argument("--train-preset", default="demo", help="training recipe: demo (minutes on a CPU) or paper")
    t.add_argument("--data", required=True, help="a prepared dataset folder (see data_prep/)")
    t.add_argument("--out", default="runs/train", help="run folder: metrics.jsonl, best/, last/ (default: runs/train)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last if it exists")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a HATConfig or TrainConfig field, e.g. --set lr=1e-3 --set levels=[[4,4]]")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="Recall@K of a trained model on a prepared split")
    e.add_argument("--checkpoint", required=True, help="a folder written by save_pretrained (e.g. runs/demo/best)")
    e.add_argument("--data", required=True, help="a prepared dataset folder")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--protocol", default="1k", choices=["1k", "coco1k", "coco5k"],
                   help="1k: the whole split (Flickr30K); coco1k: mean of 5 folds of 1,000 images; coco5k")
    e.add_argument("--ensemble", nargs="*", default=[], metavar="CHECKPOINT",
                   help="more checkpoints whose similarity matrices are summed with the first (e.g. i2t + t2i)")
    e.add_argument("--rerank-k", type=int, default=None, metavar="K",
                   help="two-stage search: global-embedding top-K per query, reranked by cross-attention "
                        "(default: score every pair)")
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--device", default=None)
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="generate the offline data, train, evaluate, draw retrievals")
    d.add_argument("--data", default="data/synthetic", help="dataset folder, generated if missing")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--preset", default="minilm", choices=["tiny", "minilm"],
                   help="model preset (default: minilm, whose frozen pretrained text encoder the demo recipe expects)")
    d.add_argument("--max-steps", type=int, default=None, help="training steps (default: the demo recipe's)")
    d.add_argument("--device", default=None)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from .pretrained import OfflineError

    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (OfflineError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        from .distributed import cleanup

        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
