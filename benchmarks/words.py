"""Which new words a model fails to read, and what its text encoder knew of them before retrieval training.

``test_words`` (the test images captioned in held-out sentence frames with new synonyms for every kind of word)
scores far below ``test_frames`` (the same frames with the generator's own words). This splits that gap by kind of
word and looks for its cause, in two tables:

1. **One kind of word at a time.** The first ``--images`` test images, captioned in the held-out frames
   (``data_prep.phrasing``) with new synonyms for one kind of word only (count, size, colour, texture, shape,
   relation), for none and for all (the captions are drawn as ``test_words``'s are: the row "all" is
   ``test_words`` itself); a checkpoint's within-family accuracy (4-way, chance 25 %) and R@1 on each.
2. **What the text encoder knows of the words.** Each new word in captions of the generator's own form
   ("F above S", other words random, ``--contexts`` of them), the mean of its tokens' features at each level's
   text layer; it counts as read when, in the same caption, the generator's words of its own meaning (crimson:
   "red") are nearer to it (cosine, their mean) than those of every other meaning of its kind ("blue", ...).
   For MiniLM as shipped (the pretrained layers each level reads, before any retrieval training) and for the
   checkpoint's text encoder (each level's projected word features, what HAT's cross-attention matches).

    python benchmarks/words.py                                            # runs/demo/best, data/synthetic
    python benchmarks/words.py --checkpoint runs/phrasing/minilm-XXXX/best --images 1000
    python benchmarks/words.py --images 8 --contexts 2 --data DIR --checkpoint CKPT   # seconds (the unit test)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep import captions as grammar  # noqa: E402
from data_prep import phrasing, synthetic  # noqa: E402
from hat_min.encoders import load_tokenizer, minilm_path  # noqa: E402
from hat_min.evaluation.data import first_images, load_splits  # noqa: E402
from hat_min.evaluation.protocols import evaluate  # noqa: E402
from hat_min.model import HAT  # noqa: E402

KINDS = phrasing.WORD_KINDS
# Each kind's meanings -> (the generator's words, the held-out grammar's new words); multi-word phrases stay whole.


def _meanings() -> dict[str, dict]:
    """{kind: {meaning: (generator words, new words)}} (empty words, as "plain"'s unsaid texture, left out)."""
    def words(options):
        return tuple(w for w in options if w)

    rel = {f"{r} {key}": (words(grammar._RELATION_WORDS[r][key]), words(phrasing._NEW_RELATION[r][key]))
           for r in grammar.RELATIONS for key in ("fwd", "back")}
    return {
        "count": {n: (words(grammar._COUNT_WORDS[n]), words(phrasing._NEW_COUNT[n])) for n in grammar._COUNT_WORDS},
        "size": {s: (words(grammar._SIZE_WORDS[s]), words(phrasing._NEW_SIZE[s])) for s in grammar._SIZE_WORDS},
        "colour": {c: ((c,), words(phrasing._NEW_COLOUR[c])) for c in grammar.COLOURS},
        "texture": {t: (words(grammar._TEXTURE_ADJ[t]), words(phrasing._NEW_TEXTURE[t])) for t in grammar._TEXTURE_ADJ},
        "shape": {s: (tuple(f[0] for f in grammar._SHAPE_WORDS[s]), tuple(f[0] for f in phrasing._NEW_SHAPE[s]))
                  for s in grammar._SHAPE_WORDS},
        "relation": rel,
    }


MEANINGS = _meanings()


# ----------------------------------------------------------------------------- 1. one kind of word at a time
def kind_captions(split, kinds, seed: int) -> list[list[str]]:
    """Five held-out-grammar captions of every row's scene, new synonyms for ``kinds`` only, drawn as
    ``test_words``'s are (all kinds: exactly its captions)."""
    return synthetic.phrasing_split_captions("test_words", split["scene"], seed, tuple(kinds))


def by_kind(model, test, seed: int, progress: bool = False) -> dict[str, dict]:
    """{condition: metrics} for new words of no kind, of each kind alone and of all kinds, on ``test``'s rows."""
    conditions = {"none (new frames only)": (), **{k: (k,) for k in KINDS}, "all (= test_words)": KINDS}
    out = {}
    for name, kinds in conditions.items():
        caps = kind_captions(test, kinds, seed)
        split = test.remove_columns("captions").add_column("captions", caps)
        out[name] = evaluate(model, split, progress=progress)
    return out


# ----------------------------------------------------------------------------- 2. what the encoder knows
def _group_words(group: dict, rng: np.random.Generator, slot: str | None, text: str | None) -> list[str]:
    """A group's noun phrase in the generator's words (random synonyms), the ``slot`` kind's word replaced."""
    plural = group["count"] > 1

    def pick(options):
        options = [o for o in options if o]
        return options[int(rng.integers(len(options)))]

    noun_forms = grammar._SHAPE_WORDS[group["shape"]][int(rng.integers(len(grammar._SHAPE_WORDS[group["shape"]])))]
    words = {"count": pick(grammar._COUNT_WORDS[group["count"]]), "size": pick(grammar._SIZE_WORDS[group["size"]]),
             "texture": pick(grammar._TEXTURE_ADJ[group["texture"]]) if group["texture"] != "plain" else "",
             "colour": group["colour"], "shape": noun_forms[plural]}
    if slot in words:
        words[slot] = text if not (slot == "shape" and plural) else _plural(text)
    return [words[k] for k in ("count", "size", "texture", "colour", "shape")]


def _plural(noun: str) -> str:
    """The plural of a shape word of either grammar (their tables pair them)."""
    for table in (grammar._SHAPE_WORDS, phrasing._NEW_SHAPE):
        for forms in table.values():
            for sing, plur in forms:
                if sing == noun:
                    return plur
    raise ValueError(f"not a shape word: {noun!r}")


def probe_captions(kind: str, contexts: int, seed: int = 0) -> list[dict]:
    """For each context: the meanings' slot texts and, per text, (caption, slot start, slot end).

    Context c is one random scene in the generator's form "F REL S"; the kind's word in F (or REL) is replaced by
    every word of every meaning in turn, all else kept."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    out = []
    for _ in range(contexts):
        groups = [{"count": int(rng.integers(1, 4)), "size": str(rng.choice(list(grammar._SIZE_WORDS))),
                   "colour": str(rng.choice(list(grammar.COLOURS))),
                   "texture": str(rng.choice(list(grammar._TEXTURE_ADJ))),
                   "shape": str(rng.choice(list(grammar._SHAPE_WORDS)))} for _ in range(2)]
        relation = str(rng.choice(grammar.RELATIONS))
        state = rng.bit_generator.state  # every slot text gets the same other words
        texts = {}
        for meaning, (known, new) in MEANINGS[kind].items():
            for text in (*known, *new):
                rng.bit_generator.state = state
                first = dict(groups[0], **({"count": meaning} if kind == "count" else {}))
                rel = text if kind == "relation" else grammar._RELATION_WORDS[relation]["fwd"][0]
                f_words = _group_words(first, rng, kind if kind != "relation" else None, text)
                s_words = _group_words(groups[1], rng, None, None)
                before = " ".join(w for w in f_words if w)
                if kind == "relation":
                    caption, start = f"{before} {text} ", len(before) + 1
                else:
                    slot_index = ("count", "size", "texture", "colour", "shape").index(kind)
                    head = " ".join(w for w in f_words[:slot_index] if w)
                    start = len(head) + (1 if head else 0)
                    caption = f"{before} {rel} "
                slot_text = text if kind != "shape" or first["count"] == 1 else _plural(text)
                caption += " ".join(w for w in s_words if w)
                texts[(meaning, text)] = (caption, start, start + len(slot_text))
                assert caption[start : start + len(slot_text)] == slot_text, (caption, slot_text)
        out.append(texts)
    return out


def _slot_features(encode, tokenizer, items: list[tuple[str, int, int]]) -> list[torch.Tensor]:
    """Per level, the unit mean feature of each caption's slot tokens: L x (N, D)."""
    enc = tokenizer([c for c, _, _ in items], padding=True, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")  # (N, W, 2) character spans; (0, 0) for special tokens and padding
    starts = torch.tensor([s for _, s, _ in items])[:, None]
    ends = torch.tensor([e for _, _, e in items])[:, None]
    in_slot = (offsets[..., 0] < ends) & (offsets[..., 1] > starts) & (offsets[..., 1] > offsets[..., 0])  # (N, W)
    if not bool(in_slot.any(1).all()):
        raise ValueError("a slot word has no token")
    with torch.inference_mode():
        levels = encode(enc["input_ids"], enc["attention_mask"])  # L x (N, W, D)
    out = []
    for feats in levels:
        feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        mean = (feats * in_slot[..., None]).sum(1) / in_slot.sum(1, keepdim=True)
        out.append(torch.nn.functional.normalize(mean, dim=-1))
    return out


def word_reading(encode, tokenizer, contexts: int = 24, seed: int = 0) -> dict[str, list[dict]]:
    """{kind: per level {"read": new words read, "total": their count, "chance": 1 / meanings, "words": {...}}}."""
    result = {}
    for kind in KINDS:
        per_context = probe_captions(kind, contexts, seed)
        keys = list(per_context[0])
        feats = _slot_features(encode, tokenizer, [ctx[k] for ctx in per_context for k in keys])  # L x (C*K, D)
        meanings = list(MEANINGS[kind])
        levels = []
        for level in feats:
            level = level.view(contexts, len(keys), -1)  # (C, K, D)
            refs = torch.stack([level[:, [j for j, (m, t) in enumerate(keys) if m == meaning
                                          and t in MEANINGS[kind][meaning][0]]].mean(1) for meaning in meanings], 1)
            words, read = {}, 0
            for j, (meaning, text) in enumerate(keys):
                if text in MEANINGS[kind][meaning][0]:
                    continue
                nearest = (level[:, j : j + 1] * refs).sum(-1).argmax(-1)  # (C,) index of the nearest meaning
                words[text] = float((nearest == meanings.index(meaning)).float().mean())
                read += words[text]
            levels.append({"read": read, "total": len(words), "chance": 1 / len(meanings), "words": words})
        result[kind] = levels
    return result


def minilm_as_shipped(layers):
    """MiniLM as its package ships it: an encode(ids, mask) -> the hidden states of ``layers``."""
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(minilm_path())).eval()

    def encode(ids, mask):
        states = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return [states[layer] for layer in layers]
    return encode


# ----------------------------------------------------------------------------- tables
def _kind_table(rows: dict[str, dict]) -> str:
    lines = ["| new words for | within family i2t / t2i | change from none | R@1 i2t / t2i |", "|---|---|---|---|"]
    base = rows[next(iter(rows))]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['family_i2t']:.1f} / {m['family_t2i']:.1f} | "
                     f"{m['family_i2t'] - base['family_i2t']:+.1f} / {m['family_t2i'] - base['family_t2i']:+.1f} | "
                     f"{m['i2t_r1']:.1f} / {m['t2i_r1']:.1f} |")
    return "\n".join(lines)


def _reading_table(readings: dict[str, dict], level_names: list[str]) -> str:
    lines = ["| text encoder, level | " + " | ".join(f"{k} ({len(MEANINGS[k])} meanings)" for k in KINDS) + " |",
             "|---" * (len(KINDS) + 1) + "|"]
    for encoder, reading in readings.items():
        for i, level in enumerate(level_names):
            cells = [f"{100 * reading[k][i]['read'] / reading[k][i]['total']:.0f} % of {reading[k][i]['total']}"
                     for k in KINDS]
            lines.append(f"| {encoder}, {level} | " + " | ".join(cells) + " |")
    lines.append("| chance | " + " | ".join(f"{100 / len(MEANINGS[k]):.0f} %" for k in KINDS) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="runs/demo/best", help="a folder written by save_pretrained")
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--images", type=int, default=400, help="first N test images (whole families; 0: all)")
    p.add_argument("--contexts", type=int, default=24, help="captions each word is read in (table 2)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.images < 0 or args.images % 4 or args.contexts < 1:
        p.error("--images must be 0 or a positive multiple of 4 (whole families), --contexts >= 1")
    if not (Path(args.checkpoint) / "config.json").is_file():
        p.error(f"no checkpoint at {args.checkpoint} (train one: python -m hat_min demo)")
    model = HAT.from_pretrained(args.checkpoint).eval()
    seed = json.loads((Path(args.data) / "synthetic.json").read_text())["seed"]
    test = first_images(load_splits(args.data)["test"], args.images)

    rows = by_kind(model, test, seed)
    print(f"\n### {args.checkpoint}: the first {len(test)} test images in the held-out frames, new words for one "
          f"kind at a time\n\n{_kind_table(rows)}")

    layers = [layer for _, layer in model.config.levels]
    names = [f"level {i + 1} (layer {layer})" for i, layer in enumerate(layers)]
    tokenizer = load_tokenizer(model.config)  # MiniLM's WordPiece vocabulary, which the checkpoint's encoder shares
    readings = {"MiniLM as shipped": word_reading(minilm_as_shipped(layers), tokenizer, args.contexts),
                "the checkpoint": word_reading(model.encode_text, tokenizer, args.contexts)}
    print(f"\n### New words read as their meaning (nearest of their kind's meanings, {args.contexts} captions each)"
          f"\n\n{_reading_table(readings, names)}")
    result = {"checkpoint": args.checkpoint, "images": len(test),
              "by_kind": {name: {k: m[k] for k in ("family_i2t", "family_t2i", "i2t_r1", "t2i_r1")}
                          for name, m in rows.items()},
              "reading": readings, "levels": names}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
