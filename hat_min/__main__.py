"""Command line: ``python -m hat_min {train, evaluate, upgrade, demo, convert-release}``; ``--help`` on each explains every
option.

    python -m hat_min demo                                        # data, training, evaluation: minutes on a CPU
    python -m hat_min train --preset tiny --data data/synthetic --out runs/tiny
    python -m hat_min train --preset tiny --data data/synthetic --out runs/tiny --resume
    python -m hat_min train --preset tiny --data data/synthetic --out runs/tiny --overwrite   # start over
    python -m hat_min evaluate --checkpoint runs/tiny/best --data data/synthetic
    python -m hat_min evaluate --checkpoint runs/tiny/best --data data/synthetic --rerank-k 32
    torchrun --nproc_per_node 2 -m hat_min train --preset tiny --data data/synthetic --out runs/ddp
    python -m hat_min upgrade --checkpoint old_runs/best          # a config.json written before some fields existed
    python -m hat_min convert-release hat_f30k.ckpt --out runs/release_f30k --trust-pickle   # the authors' checkpoint

Expected failures (offline hub, missing or corrupt data, a bad option or device, a run folder already used
or in use) end with one line on stderr and exit code 2, not a traceback; a loss that became NaN, with one line
and exit code 1; Ctrl-C with one line naming the last checkpoint and the command that resumes from it, exit
code 130.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
# The demo scores the generalisation splits on their first 400 images (100 whole families; one image moves
# within-family accuracy by 0.25 points): each whole split would add about a minute on two CPU cores.
DEMO_GENERAL_IMAGES = 400


def _count(text: str) -> int:
    """A number of images for --general-images: 0 (all) or a positive multiple of 4 (whole families)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0 or n % 4:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or a positive multiple of 4 (whole families), not {text!r}")
    return n


def _summary(metrics: dict) -> dict:
    """The last line's numbers: Recall@K, rSum and (on splits with families) every family metric, rounded."""
    keys = [*RECALL_KEYS, *(k for k in metrics if k.startswith(("family_", "in_family_", "winoground_")))]
    return {k: round(metrics[k], 2) for k in keys}


def _print_tables(rows: dict) -> None:
    """The Recall@K table and, where the split has families, the within-family table."""
    from .evaluation.tables import format_family_table, format_table, format_winoground_table

    print(format_table(rows))
    family = format_family_table(rows)
    if family:
        print("\nWithin-family accuracy (the right one of 4 scenes with the same words; chance 25 %), and two-way "
              "by kind of swap (chance 50 %):")
        print(family)
        print("\nWinoground scores over pairs of family members (chance: text 25, image 25, group 16.7 %):")
        print(format_winoground_table(rows))


def parse_field(cls, name: str, text: str):
    """``--set name=text`` as a value of the field ``cls.name``: JSON, else the text itself, read by the configs'
    own ``conform`` (leniently: ``1e3`` counts as an int, ``"7"`` as 7, ``True``/``None`` as ``true``/``null``)."""
    import math
    import typing

    from .config import field_types, conform, describe, example

    hint = field_types(cls)[name]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if str in (hint, *typing.get_args(hint)) and not isinstance(value, str) and value is not None:
        value = text  # name=123: a string field takes the text as written
    try:
        return conform(value, hint, lenient=True)
    except TypeError:
        infinite = isinstance(value, float) and not math.isfinite(value)  # NaN, Infinity: JSON reads them
        raise ValueError(f"--set {name}={text}: {cls.__name__}.{name} must be {describe(hint)}"
                         f"{' (finite)' if infinite else ''} (JSON, e.g. {example(hint)}), "
                         f"got {value if infinite else text!r}") from None


def _overrides(pairs: list[str], cls) -> dict:
    """``["lr=1e-3", "levels=[[4,4]]"]`` -> {field: value}, each value read as its field's type in ``cls``
    (``parse_field``), checked before any data or model is loaded."""
    fields = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        out[key] = parse_field(cls, key, value)
    return out


def _configs(args):
    from .config import HATConfig
    from .training.recipe import DEFAULT_TRAIN_PRESET, TrainConfig

    model_sets = [s for s in args.set if s.partition("=")[0] in {f.name for f in dataclasses.fields(HATConfig)}]
    train_sets = [s for s in args.set if s not in model_sets]
    model_overrides, train_overrides = _overrides(model_sets, HATConfig), _overrides(train_sets, TrainConfig)
    model_cfg = HATConfig.preset(args.preset).replace(**model_overrides)  # replace: --set name=... is a field too
    # --train-preset left out: the model preset's own recipe (paper for paper, else demo)
    train_preset = args.train_preset or DEFAULT_TRAIN_PRESET.get(args.preset, "demo")
    train_cfg = TrainConfig.preset(train_preset).replace(**train_overrides)
    return model_cfg, train_cfg


def cmd_train(args) -> dict:
    from .training.loop import train

    model_cfg, train_cfg = _configs(args)
    _, summary = train(model_cfg, train_cfg, args.data, args.out, resume=args.resume, device=args.device,
                       overwrite=args.overwrite)
    print(json.dumps(summary))
    return summary


def _interrupted(args, argv: list[str]) -> str:
    """The line Ctrl-C prints: for ``train``, where the last checkpoint is and the command that resumes."""
    import shlex

    if getattr(args, "command", None) != "train":
        return "interrupted"
    from .training.checkpoint import find_checkpoint

    out, rest = Path(args.out), [a for a in argv if a not in ("--overwrite", "--resume")]
    last = find_checkpoint(out / "last")
    if last is not None:
        return (f"interrupted; the last checkpoint is {last}; resume with: "
                f"{shlex.join(['python', '-m', 'hat_min', *rest, '--resume'])}")
    return (f"interrupted before the first checkpoint (none in {out / 'last'}); start again with: "
            f"{shlex.join(['python', '-m', 'hat_min', *rest, '--overwrite'])}")


def cmd_evaluate(args) -> dict:
    from data_prep import GENERALISATION_SPLITS

    from .evaluation.data import load_splits
    from .evaluation.protocols import COCO5K_IMAGES, _check_protocol, evaluate
    from .evaluation.retrieval import rerank_evaluate
    from .fast.device import pick_device
    from .model import HAT

    pick_device(args.device)  # a device that is not here: refused before any data or model is loaded
    if args.rerank_k is not None and args.ensemble:
        raise ValueError("--rerank-k scores one model; leave out --ensemble (ensembles are scored in full)")
    if args.rerank_k is not None and args.rerank_k < 1:
        raise ValueError(f"--rerank-k must be >= 1, got {args.rerank_k}")
    if args.fold_images is not None and args.protocol != "coco1k":
        raise ValueError(f"--fold-images sets the folds of --protocol coco1k; leave it out with --protocol {args.protocol}")
    fold_images = 1000 if args.fold_images is None else args.fold_images
    splits = load_splits(args.data)  # the data and the protocol are checked before any model is loaded
    if args.split not in splits:
        rebuild = "" if args.split not in GENERALISATION_SPLITS else (
            f"; generated data written before the generalisation splits gets them when rebuilt: "
            f"python -m data_prep.synthetic --out {args.data} --overwrite")
        raise ValueError(f"the dataset at {args.data} has no {args.split!r} split; it has: {', '.join(splits)} "
                         f"(choose one with --split){rebuild}")
    split = splits[args.split]
    if args.protocol == "coco5k" and len(split) != COCO5K_IMAGES:
        raise ValueError(f"--protocol coco5k is MSCOCO's 5K test split ({COCO5K_IMAGES:,} images), but the "
                         f"{args.split!r} split has {len(split):,}; use --protocol 1k (the whole split) or coco1k "
                         f"with --fold-images N")
    _check_protocol(args.protocol, len(split), fold_images)
    models = [HAT.from_pretrained(path) for path in [args.checkpoint, *args.ensemble]]
    name = f"{Path(args.checkpoint).name} ({args.protocol})"
    if args.rerank_k is None:
        metrics = evaluate(models if len(models) > 1 else models[0], split, protocol=args.protocol,
                           device=args.device, batch_size=args.batch_size, baselines=True, fold_images=fold_images)
    else:
        metrics = rerank_evaluate(models[0], split, args.rerank_k, args.protocol, device=args.device,
                                  batch_size=args.batch_size, fold_images=fold_images)
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


def cmd_upgrade(args) -> list[str]:
    """Fill the HATConfig fields an older checkpoint's config.json lacks with today's defaults, naming them."""
    from .model import upgrade_config

    missing = upgrade_config(args.checkpoint)
    print(f"upgraded {Path(args.checkpoint) / 'config.json'}: added {', '.join(missing)}" if missing else
          f"{Path(args.checkpoint) / 'config.json'} has every field; nothing to upgrade")
    return missing


def cmd_demo(args) -> dict:
    from data_prep import GENERALISATION_SPLITS
    from data_prep.synthetic import ensure_default, not_default

    from .config import HATConfig
    from .evaluation.data import first_images, load_splits
    from .evaluation.protocols import evaluate
    from .evaluation.tables import format_split_table
    from .training.loop import TrainConfig, train
    from .tutorial.viz import save_retrieval_examples

    started = time.monotonic()
    data = ensure_default(args.data)
    if differs := not_default(data):
        print(differs, file=sys.stderr)
    model_cfg = HATConfig.preset(args.preset)
    train_cfg = TrainConfig.preset("demo", **({"max_steps": args.max_steps} if args.max_steps else {}))
    if any((Path(args.out) / name).exists() for name in ("metrics.jsonl", "best", "last")):
        print(f"the demo replaces the earlier demo run in {args.out}", file=sys.stderr)
    model, summary = train(model_cfg, train_cfg, data, args.out, device=args.device, overwrite=True)
    splits = load_splits(data)
    test = splits["test"]
    metrics = evaluate(model, test, device=args.device, return_sims=True, baselines=True)
    picture = save_retrieval_examples(test, metrics["sims"], Path(args.out) / "retrievals.png")
    references = {f"{ref} (reference)": m for ref, m in metrics["baselines"].items()}
    _print_tables({f"HAT {args.preset}, generated test split ({len(test)} images)": metrics, **references})
    subsets = {name: first_images(splits[name], args.general_images) for name in GENERALISATION_SPLITS if name in splits}
    general = {name: evaluate(model, subset, device=args.device, baselines=True) for name, subset in subsets.items()}
    if general:
        sizes = ", ".join(f"{name} {len(subset)}" for name, subset in subsets.items())
        print(f"\nGeneralisation: new images whose groups pair attributes that no training scene pairs "
              f"(test_unseen), and the test images in sentence frames (test_frames) and also words (test_words) "
              f"that training never uses (images scored: {sizes}; `python -m hat_min evaluate --split NAME` "
              f"scores a whole split):\n{format_split_table({'test': metrics, **general})}")
    missing = [name for name in GENERALISATION_SPLITS if name not in splits]
    if missing:
        print(f"\n(the dataset at {data} predates the split(s) {', '.join(missing)}; rebuild it with "
              f"`python -m data_prep.synthetic --out {data} --overwrite` to measure them)")
    print(f"trained {summary['steps']} steps; retrievals drawn in {picture}; "
          f"{time.monotonic() - started:.0f} s in all")
    result = _summary(metrics)
    result["baselines"] = {ref: _summary(m) for ref, m in metrics["baselines"].items()}
    result["splits"] = {name: {**_summary(m), "images": len(subsets[name]),
                               "baselines": {"pooled": _summary(m["baselines"]["pooled"])}}
                        for name, m in general.items()}
    result.update(checkpoint=str(Path(args.out) / "best"), data=str(data), seconds=round(time.monotonic() - started))
    print(json.dumps(result))
    return result


def _parser() -> argparse.ArgumentParser:
    from data_prep.splits import GENERALISATION_SPLITS, SPLITS  # names only: no import of datasets

    from .config import PRESETS  # dataclasses only: no torch

    p = argparse.ArgumentParser(prog="python -m hat_min", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a HAT model")
    t.add_argument("--preset", default="tiny", choices=list(PRESETS), metavar="PRESET",
                   help=f"model preset: {', '.join(PRESETS)} (default: tiny)")
    t.add_argument("--train-preset", default=None,
                   help="training recipe: demo (minutes on a CPU), notebook, gpu, colab (the paper's two phases in "
                        "one Colab runtime) or paper (default: the model preset's own: paper for paper, else demo)")
    t.add_argument("--data", required=True, help="a prepared dataset folder (see data_prep/)")
    t.add_argument("--out", default="runs/train", help="run folder: metrics.jsonl, best/, last/ (default: runs/train)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from its checkpoint OUT/last (refused if there is none)")
    t.add_argument("--overwrite", action="store_true",
                   help="start afresh in an OUT that holds an earlier run, deleting its metrics.jsonl, best/ and last/")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a HATConfig or TrainConfig field, e.g. --set lr=1e-3 --set levels=[[4,4]]")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="Recall@K of a trained model on a prepared split")
    e.add_argument("--checkpoint", required=True, help="a folder written by save_pretrained (e.g. runs/demo/best)")
    e.add_argument("--data", required=True, help="a prepared dataset folder")
    e.add_argument("--split", default="test", choices=[*SPLITS, *GENERALISATION_SPLITS],
                   help="generated data only: test_unseen, new images whose groups pair attributes that training never "
                        "pairs; test_frames / test_words, the test images with captions in sentence frames (and words) "
                        "that training never uses (default: test)")
    e.add_argument("--protocol", default="1k", choices=["1k", "coco1k", "coco5k"],
                   help="1k: the whole split (Flickr30K); coco1k: mean over folds of --fold-images images (MSCOCO "
                        "1K: 5 folds of 1,000); coco5k: the whole split, which must have 5,000 images (MSCOCO 5K)")
    e.add_argument("--fold-images", type=int, default=None, metavar="N",
                   help="coco1k only: images per fold, a divisor of the split's size (default: 1000)")
    e.add_argument("--ensemble", nargs="*", default=[], metavar="CHECKPOINT",
                   help="more checkpoints whose similarity matrices are summed with the first (e.g. i2t + t2i)")
    e.add_argument("--rerank-k", type=int, default=None, metavar="K",
                   help="two-stage search: global-embedding top-K per query, reranked by cross-attention "
                        "(default: score every pair)")
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--device", default=None)
    e.set_defaults(func=cmd_evaluate)

    u = sub.add_parser("upgrade", help="give an older checkpoint's config.json the fields it lacks (today's defaults)")
    u.add_argument("--checkpoint", required=True, help="a folder written by save_pretrained")
    u.set_defaults(func=cmd_upgrade)

    d = sub.add_parser("demo", help="generate the offline data, train, evaluate, draw retrievals")
    d.add_argument("--data", default="data/synthetic", help="dataset folder, generated if missing")
    d.add_argument("--out", default="runs/demo", help="run folder, replaced by every demo (default: runs/demo)")
    d.add_argument("--preset", default="minilm", choices=[name for name in PRESETS if name != "paper"],
                   help="model preset (default: minilm, the pretrained text encoder the demo recipe expects; "
                        "minilm_labelled: its top layers pretrained to label each word's group and place)")
    d.add_argument("--max-steps", type=int, default=None, help="training steps (default: the demo recipe's)")
    d.add_argument("--general-images", type=_count, default=DEMO_GENERAL_IMAGES, metavar="N",
                   help="score the first N images of each generalisation split (whole families; 0: all), "
                        f"default {DEMO_GENERAL_IMAGES}: the demo stays within minutes on two CPU cores")
    d.add_argument("--device", default=None)
    d.set_defaults(func=cmd_demo)

    from .weights.release import add_subparser  # convert-release: the authors' checkpoints (LuminosityX/HAT)

    add_subparser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from .encoders import OfflineError
    from .fast.device import DeviceError

    args = _parser().parse_args(argv)
    interrupted = False
    try:
        args.func(args)
    except (OfflineError, FileNotFoundError, ValueError, DeviceError) as err:  # a bad option, file or setting
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from .training.loop import NonFiniteLossError  # imported here: the training loop is slow to import

        if not isinstance(err, NonFiniteLossError):
            raise
        print(f"error: {err}", file=sys.stderr)  # the run itself failed; the message says what was kept
        return 1
    except KeyboardInterrupt:  # Ctrl-C: no traceback and no checkpoint mid-step; the last periodic one stays
        interrupted = True
    finally:
        from .training.distributed import cleanup

        cleanup()
    if interrupted:  # printed once the traceback is gone, so after the progress bar it closed
        print(_interrupted(args, sys.argv[1:] if argv is None else list(argv)), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
