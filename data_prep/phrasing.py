"""A second caption grammar, for test captions only: how a user might describe a scene in their own words.

The generator's grammar (``data_prep.captions``) writes every training caption and every caption
the offline text encoder was pretrained on. A model can learn that grammar instead of the language:
its sentence frames, its ~70 words, where each group's words stand. This module writes captions of
the same scenes that the generator never writes, so the test asks whether a model reads a sentence
or recognises a template:

- **new frames**: sentence frames the generator has no template for ("we see F above S",
  "above S one finds F", "F and S, the former above the latter", "the upper half shows F and the
  lower half shows S", ...). Each frame holds at least one *frame word* (``FRAME_WORDS``:
  "see", "finds", "former", "half", ...) that no caption of the generator contains;
- **new words**: synonyms the generator never uses for counts, sizes, colours, textures, shapes
  and relations ("a trio of", "miniature", "crimson", "speckled", "wedges", "higher than", ...;
  ``NEW_WORDS``).

``phrase_captions(scene, rng, new_words=False)`` writes five different captions of a scene from the
new frames with the generator's own words for every attribute (the split ``test_frames`` of
``data_prep.synthetic``); ``new_words=True`` uses a new synonym wherever one exists (``test_words``);
``new_words=("colour",)`` only for the kinds of word named (``WORD_KINDS``; ``benchmarks/words.py`` finds
which kinds a model fails to read).
tests/test_phrasing.py checks, over the generated data, that no training, validation or
pretraining caption contains a frame word or a new word, and that no caption written here is a
caption of the generator's grammar. This grammar is still only one more grammar: a model that
scores well on it may still fail on phrasings that neither grammar writes.

    rng = np.random.default_rng(0)
    phrase_captions(scene, rng)                  # ["We see two red circles above a large blue star", ...]
    phrase_captions(scene, rng, new_words=True)  # ["Above a huge cobalt star one finds a couple of crimson discs", ...]
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from data_prep.captions import (
    _COUNT_WORDS,
    _PREFIXES,
    _RELATION_WORDS,
    _SHAPE_WORDS,
    _SIZE_WORDS,
    _TEMPLATES,
    _TEXTURE_ADJ,
    _TEXTURE_WITH,
    COLOURS,
    RELATIONS,
    distinct_captions,
    pick_one,
)

# ----------------------------------------------------------------------------- new words
_NEW_COUNT = {1: ("a lone", "just one", "a solitary"), 2: ("a couple of", "twin"), 3: ("a trio of", "a set of three")}
_NEW_SIZE = {"small": ("miniature", "wee", "smallish"), "large": ("huge", "giant", "oversized")}
_NEW_COLOUR = {
    "red": ("crimson", "scarlet"), "green": ("emerald", "lime"), "blue": ("cobalt", "azure"),
    "yellow": ("golden", "lemon"), "purple": ("violet", "plum"), "orange": ("tangerine", "amber"),
    "white": ("ivory", "snowy"), "black": ("ebony", "inky"),
}
_NEW_TEXTURE = {"plain": ("", "unpatterned", "uniform"), "striped": ("stripy", "banded", "pinstriped"),
                "dotted": ("speckled", "polka-dot", "dotty")}
_NEW_SHAPE = {
    "circle": (("orb", "orbs"), ("disk", "disks")), "square": (("block", "blocks"),),
    "triangle": (("wedge", "wedges"),), "diamond": (("rhombus", "rhombuses"), ("lozenge", "lozenges")),
    "star": (("five-pointed star", "five-pointed stars"),), "cross": (("plus shape", "plus shapes"),),
}
_NEW_RELATION = {
    "above": {"fwd": ("higher than", "atop"), "back": ("lower than", "down from")},
    "left of": {"fwd": ("further left than", "leftward of"), "back": ("further right than", "rightward of")},
}
# the two halves of the picture, named by the relation's axis: (first group's, second group's)
_HALVES = {"above": ("upper half", "lower half"), "left of": ("left half", "right half")}

# ----------------------------------------------------------------------------- new frames
# F = subject (top / left group), S = object (bottom / right group); {v_F} agrees with F ("sits" / "sit").
FRAMES = (
    "we see {F} {fwd} {S}",
    "you can see {S} {back} {F}",
    "{F} {v_F:sit} {fwd} {S}",
    "{S} {v_S:rest} {back} {F}",
    "{fwd} {S} one finds {F}",
    "{back} {F} one finds {S}",
    "{F} and {S}, the former {fwd} the latter",
    "{S} and {F}, the latter {fwd} the former",
    "the {half_F} shows {F} and the {half_S} shows {S}",
    "in this scene {S} {be_S} positioned {back} {F}",
)


def _words(options) -> set[str]:
    """Every word of a phrase, or of nested tuples and dicts of phrases ("{F}" placeholders left out)."""
    if isinstance(options, str):
        return set(re.findall(r"[a-z][a-z-]*", re.sub(r"\{[^}]*\}", " ", options.lower())))
    values = list(options.values() if isinstance(options, dict) else options)
    return set().union(*(_words(v) for v in values if isinstance(v, (str, tuple, list, dict))))


# every word the generator can write: its tables, its templates and prefixes, and the agreement words
GENERATOR_WORDS = frozenset(_words((_COUNT_WORDS, _SIZE_WORDS, _TEXTURE_ADJ, _TEXTURE_WITH, _SHAPE_WORDS,
                                    _RELATION_WORDS, tuple(COLOURS), tuple(t for t, _ in _TEMPLATES), _PREFIXES,
                                    "is are it them")))
# the words of the new frames that the generator never writes: every frame holds at least one
FRAME_WORDS = frozenset(_words((tuple(re.sub(r"\{v_\w:(\w+)\}", r"\1 \1s", f) for f in FRAMES), _HALVES))
                        - GENERATOR_WORDS)  # a verb {v_F:sit} is "sit" or "sits"
# every word of this grammar that the generator never writes (frame words and synonyms)
NEW_WORDS = frozenset((FRAME_WORDS | _words((_NEW_COUNT, _NEW_SIZE, _NEW_COLOUR, _NEW_TEXTURE, _NEW_SHAPE,
                                             _NEW_RELATION))) - GENERATOR_WORDS)


# The kinds of word that have new synonyms: ``new_words`` may name some of them (one kind at a time: which words
# a model fails to read) instead of True (all) or False (none).
WORD_KINDS = ("count", "size", "colour", "texture", "shape", "relation")


def new_word_kinds(new_words: bool | Iterable[str]) -> frozenset[str]:
    """The kinds of word that take new synonyms: True = all of ``WORD_KINDS``, False = none, or the kinds named."""
    if isinstance(new_words, (bool, np.bool_)):
        return frozenset(WORD_KINDS) if new_words else frozenset()
    if isinstance(new_words, str):
        new_words = (new_words,)
    kinds = frozenset(new_words)
    unknown = sorted(kinds - set(WORD_KINDS))
    if unknown:
        raise ValueError(f"new_words names unknown kinds of word {unknown}; choose from {list(WORD_KINDS)} "
                         f"(or True for all, False for none)")
    return kinds


def _choose(rng: np.random.Generator, known, new, new_words: bool):
    """A word for one slot: the generator's own, or with ``new_words`` a synonym it never writes."""
    return pick_one(rng, new) if new_words else pick_one(rng, known)


def _group_phrase(group: dict, rng: np.random.Generator, kinds: frozenset[str]) -> str:
    """A noun phrase for one group: count, size, texture, colour, noun (textures also after the colour); the
    words of ``kinds`` are new synonyms."""
    plural = group["count"] > 1
    count = _choose(rng, _COUNT_WORDS[group["count"]], _NEW_COUNT[group["count"]], "count" in kinds)
    size = _choose(rng, _SIZE_WORDS[group["size"]], _NEW_SIZE[group["size"]], "size" in kinds)
    colour = pick_one(rng, _NEW_COLOUR[group["colour"]]) if "colour" in kinds else group["colour"]
    texture = _choose(rng, _TEXTURE_ADJ[group["texture"]], _NEW_TEXTURE[group["texture"]], "texture" in kinds)
    noun = _choose(rng, _SHAPE_WORDS[group["shape"]], _NEW_SHAPE[group["shape"]], "shape" in kinds)[plural]
    words = [count, size, texture, colour, noun] if rng.random() < 0.5 else [count, size, colour, texture, noun]
    return " ".join(w for w in words if w)


def _one_caption(scene: dict, rng: np.random.Generator, kinds: frozenset[str]) -> str:
    """One caption of ``scene`` from a random new frame, the words of ``kinds`` new synonyms."""
    subj, obj, relation = scene["subject"], scene["object"], scene["relation"]
    known, new = _RELATION_WORDS[relation], _NEW_RELATION[relation]
    frame = pick_one(rng, FRAMES)
    fill = {
        "F": _group_phrase(subj, rng, kinds), "S": _group_phrase(obj, rng, kinds),
        "fwd": _choose(rng, known["fwd"], new["fwd"], "relation" in kinds),
        "back": _choose(rng, known["back"], new["back"], "relation" in kinds),
        "half_F": _HALVES[relation][0], "half_S": _HALVES[relation][1],
        "be_S": "is" if obj["count"] == 1 else "are",
    }

    def verb(match: re.Match) -> str:
        role, stem = match[1], match[2]
        return stem + "s" if (subj if role == "F" else obj)["count"] == 1 else stem

    text = re.sub(r"\{v_(F|S):(\w+)\}", verb, frame).format(**fill)
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:] + "."
    return text


def phrase_captions(scene: dict, rng: np.random.Generator, new_words: bool | Iterable[str] = False,
                    n: int = 5) -> list[str]:
    """``n`` different captions of ``scene`` in the new frames; with ``new_words`` the new synonyms (True: for every
    kind of word; or the kinds of ``WORD_KINDS`` named, e.g. ``("colour",)``)."""
    kinds = new_word_kinds(new_words)
    return distinct_captions(lambda: _one_caption(scene, rng, kinds), n, scene)


def _frame_regex(frame: str) -> re.Pattern:
    """A full-match regex for the captions one frame writes, with any words of either grammar in its slots."""

    def words(key: str) -> str:
        options = [w for r in RELATIONS for table in (_RELATION_WORDS, _NEW_RELATION) for w in table[r][key]]
        return "(?:" + "|".join(re.escape(w) for w in sorted(options, key=len, reverse=True)) + ")"
    fill = {"F": ".+", "S": ".+", "fwd": words("fwd"), "back": words("back"), "be_S": "(?:is|are)",
            "half_F": "(?:upper|left) half", "half_S": "(?:lower|right) half"}

    def slot(part: str) -> str:
        if not part.startswith("{"):
            return re.escape(part)
        verb = re.fullmatch(r"\{v_\w:(\w+)\}", part)  # {v_F:sit}: "sit" or "sits"
        return rf"{verb[1]}s?" if verb else fill[part[1:-1]]

    return re.compile("".join(slot(part) for part in re.split(r"(\{[^}]*\})", frame)))


_FRAME_RES = [(frame, _frame_regex(frame)) for frame in FRAMES]


def frame_of(caption: str) -> str:
    """The frame of ``FRAMES`` that wrote a caption of this grammar, e.g. ``"{fwd} {S} one finds {F}"``
    (F is the top / left group, S the other): to score a model frame by frame."""
    norm = caption.strip().rstrip(".").lower()
    found = [frame for frame, regex in _FRAME_RES if regex.fullmatch(norm)]
    if len(found) != 1:
        raise ValueError(f"not a caption of one frame of data_prep.phrasing ({len(found)} match): {caption!r}")
    return found[0]


# The generator's relation phrases and the group each places: "F above S" and "F at the top" place F,
# "S below F" and "S at the bottom" place S.
_PLACES = {"fwd": "F", "back": "S", "end_F": "F", "end_S": "S"}


def order_rule(frame: str) -> bool | None:
    """Whether, in a frame of either grammar, the group just before each of the generator's relation phrases
    ({fwd}, {back}, {end_F}, {end_S}) is the group that phrase places: True if always (every one of the
    generator's ten frames), False if the other group at least once ("{F} and {S}, the former {fwd} the
    latter"), None if no group stands before any ("{fwd} {S} one finds {F}"). A reader that takes the group
    just before "above" to be the upper one is right on True frames and wrong on False ones."""
    verdicts, last = [], None
    for slot in re.findall(r"\{(\w+)", frame):
        if slot in ("F", "S"):
            last = slot
        elif slot in _PLACES and last is not None:
            verdicts.append(last == _PLACES[slot])
    return all(verdicts) if verdicts else None


ORDER_RULE_LABELS = {True: "the one it places", False: "the other", None: "none"}  # order_rule's verdicts, in words


def caption_words(text: str) -> set[str]:
    """The lower-case words of a caption (hyphenated words kept whole), as ``FRAME_WORDS`` holds them."""
    return _words(text)
