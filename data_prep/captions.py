"""The language of the generated scenes: vocabulary, caption grammar, a parser, and flips.

Used by ``data_prep.synthetic`` to write five captions per scene ("two small red triangles above
a large striped blue circle"), to read any caption back into its scene (tests check every
caption that way), and to flip a caption with its image.

Augmentation lesson: a horizontal flip turns "left of" into "right of". A loader that flips an
image must flip its caption too (``flip_caption``); a vertical flip would swap "above" and
"below" and turn triangles and stars upside down, so it is not used.
"""
from __future__ import annotations

import re

import numpy as np

# ----------------------------------------------------------------------------- vocabulary
COLOURS = {
    "red": (214, 39, 40),
    "green": (40, 160, 50),
    "blue": (35, 85, 225),
    "yellow": (245, 208, 25),
    "purple": (145, 65, 195),
    "orange": (250, 128, 15),
    "white": (252, 252, 252),
    "black": (30, 30, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
SIZES = ("small", "large")
TEXTURES = ("plain", "striped", "dotted")
COUNTS = (1, 2, 3)
RELATIONS = ("above", "left of")  # canonical; subject is above / to the left of object
ATTRIBUTES = ("count", "size", "colour", "texture", "shape")
BINDING_ATTRIBUTES = ("colour", "texture", "size")  # swapping these keeps every word
VARIANTS = ("base", "binding", "role", "binding+role")

# ----------------------------------------------------------------------------- held-out compositions
# Attribute pairs that no group of a training, validation or test scene has, nor any scene the
# offline encoders are pretrained on (data_prep.labels draws its scenes the same way): the
# test_unseen split is made of them (CREPE's systematicity). Every word still occurs in training,
# only never in these pairings: six colour-shape pairs (each shape once, six colours) and two
# texture-shape pairs.
HELD_OUT_COMBINATIONS = (
    {"colour": "red", "shape": "star"},
    {"colour": "green", "shape": "circle"},
    {"colour": "blue", "shape": "triangle"},
    {"colour": "yellow", "shape": "cross"},
    {"colour": "purple", "shape": "square"},
    {"colour": "orange", "shape": "diamond"},
    {"texture": "striped", "shape": "square"},
    {"texture": "dotted", "shape": "star"},
)


def held_out_combinations(group: dict) -> list[dict]:
    """The ``HELD_OUT_COMBINATIONS`` that a group {count, size, colour, texture, shape} has."""
    return [c for c in HELD_OUT_COMBINATIONS if all(group[k] == v for k, v in c.items())]


def is_unseen(scene: dict) -> bool:
    """Whether a scene has a held-out combination in either group (only test_unseen scenes have)."""
    return any(held_out_combinations(scene[role]) for role in ("subject", "object"))


# ----------------------------------------------------------------------------- caption grammar
_COUNT_WORDS = {1: ("a", "one", "a single"), 2: ("two", "a pair of"), 3: ("three",)}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_TEXTURE_ADJ = {"plain": ("", "", "plain", "solid"), "striped": ("striped",), "dotted": ("dotted", "spotted")}
_TEXTURE_WITH = {"plain": ("",), "striped": ("with stripes",), "dotted": ("with dots", "with spots")}
_SHAPE_WORDS = {
    "circle": (("circle", "circles"), ("disc", "discs")),
    "square": (("square", "squares"),),
    "triangle": (("triangle", "triangles"),),
    "diamond": (("diamond", "diamonds"),),
    "star": (("star", "stars"),),
    "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
}
_RELATION_WORDS = {
    "above": {
        "fwd": ("above", "over", "on top of"),
        "back": ("below", "under", "beneath", "underneath"),
        "ends": ("at the top", "at the bottom"),
    },
    "left of": {
        "fwd": ("to the left of", "left of", "on the left of"),
        "back": ("to the right of", "right of", "on the right of"),
        "ends": ("on the left", "on the right"),
    },
}
# F = subject (top / left group), S = object (bottom / right group). True: a noun phrase that
# may take a prefix such as "a picture of".
_BASE_TEMPLATES = (
    ("{F} {fwd} {S}", True),
    ("{S} {back} {F}", True),
    ("{F} {be_F} {fwd} {S}", False),
    ("{S} {be_S} {back} {F}", False),
    ("there {be_F} {F} {fwd} {S}", False),
    ("there {be_S} {S} {back} {F}", False),
    ("{S} with {F} {fwd} {it_S}", True),
    ("{F} with {S} {back} {it_F}", True),
    ("{F} {end_F} and {S} {end_S}", True),
    ("{S} {end_S} and {F} {end_F}", True),
)
# More frames, off by default (``make_captions(..., more_frames=share)``, ``python -m data_prep.synthetic
# --more-frames SHARE``). In the ten frames above, the group just before a relation phrase is always the one
# it places ("F above S", "S below F", "S with F above it", "F at the top"), so the order of the words alone
# tells which group is on top; in these eight it never is ("below a red circle is a blue star", "at the top is
# F and at the bottom is S", "S and above it F"). They use only the words above, none of the held-out grammar's
# (data_prep.phrasing).
MORE_TEMPLATES = (
    ("{fwd} {S} {be_F} {F}", False),
    ("{back} {F} {be_S} {S}", False),
    ("{fwd} {S} there {be_F} {F}", False),
    ("{back} {F} there {be_S} {S}", False),
    ("{end_F} {be_F} {F} and {end_S} {be_S} {S}", False),
    ("{end_S} {be_S} {S} and {end_F} {be_F} {F}", False),
    ("{S} and {fwd} {it_S} {F}", True),
    ("{F} and {back} {it_F} {S}", True),
)
_TEMPLATES = _BASE_TEMPLATES + MORE_TEMPLATES  # every frame the parser reads
_PREFIXES = ("", "", "", "a picture of ", "an image of ", "a drawing of ")


def pick_one(rng: np.random.Generator, options):
    """One element of `options`, drawn with `rng`."""
    return options[int(rng.integers(len(options)))]


def _group_phrase(group: dict, rng: np.random.Generator, allow_with: bool) -> str:
    """A noun phrase for one group, e.g. "two little red striped triangles"."""
    plural = group["count"] > 1
    count = pick_one(rng, _COUNT_WORDS[group["count"]])
    size = pick_one(rng, _SIZE_WORDS[group["size"]])
    noun = pick_one(rng, _SHAPE_WORDS[group["shape"]])[plural]
    colour, texture = group["colour"], group["texture"]
    place = 0 if texture == "plain" else int(rng.integers(3 if allow_with else 2))
    if place == 2:
        words = [count, size, colour, noun, pick_one(rng, _TEXTURE_WITH[texture])]
    else:
        adj = pick_one(rng, _TEXTURE_ADJ[texture])
        words = [count, size, adj, colour, noun] if place == 0 else [count, size, colour, adj, noun]
    return " ".join(w for w in words if w)


def _one_caption(scene: dict, rng: np.random.Generator, more_frames: float = 0.0) -> str:
    """One caption of `scene`, with a random template, synonyms, prefix and casing; a template of
    ``MORE_TEMPLATES`` with probability ``more_frames`` (no random draw for it at 0, the default data)."""
    subj, obj, words = scene["subject"], scene["object"], _RELATION_WORDS[scene["relation"]]
    more = more_frames > 0 and rng.random() < more_frames
    template, noun_phrase = pick_one(rng, MORE_TEMPLATES if more else _BASE_TEMPLATES)
    allow_with = " with " not in template
    text = template.format(
        F=_group_phrase(subj, rng, allow_with),
        S=_group_phrase(obj, rng, allow_with),
        fwd=pick_one(rng, words["fwd"]),
        back=pick_one(rng, words["back"]),
        end_F=words["ends"][0],
        end_S=words["ends"][1],
        be_F="is" if subj["count"] == 1 else "are",
        be_S="is" if obj["count"] == 1 else "are",
        it_F="it" if subj["count"] == 1 else "them",
        it_S="it" if obj["count"] == 1 else "them",
    )
    if noun_phrase:
        text = pick_one(rng, _PREFIXES) + text
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:] + "."
    return text


def base_frame_caption(scene: dict, rng: np.random.Generator) -> str:
    """One caption of ``scene`` in the generator's ten base frames (the word order tells which group is on top):
    what the caption curriculum trains on before it shows the ``MORE_TEMPLATES`` (hat_min.training.data)."""
    return _one_caption(scene, rng)


def more_frames_problem(share) -> str | None:
    """What is wrong with ``share`` as ``more_frames`` (a number from 0 to 1), or None if nothing."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        return f"more_frames must be a share of the captions, 0 to 1, got {share!r}"
    return None


def make_captions(scene: dict, rng: np.random.Generator, n: int = 5, more_frames: float = 0.0) -> list[str]:
    """`n` different captions of `scene` (different ignoring case and the final period); ``more_frames``: the
    share of them drawn from ``MORE_TEMPLATES``, 0 to 1."""
    problem = more_frames_problem(more_frames)
    if problem:
        raise ValueError(problem)
    return distinct_captions(lambda: _one_caption(scene, rng, more_frames), n, scene)


def distinct_captions(write, n: int, scene: dict) -> list[str]:
    """The first `n` different results of `write()` (different ignoring case and the final period)."""
    captions, seen = [], set()
    for _ in range(100 * n):
        text = write()
        key = text.lower().rstrip(".")
        if key not in seen:
            seen.add(key)
            captions.append(text)
        if len(captions) == n:
            return captions
    raise RuntimeError(f"could not write {n} different captions for {scene}")


# ----------------------------------------------------------------------------- caption parser
def _alt(options) -> str:
    """A non-capturing regex alternation, longest option first."""
    return "(?:" + "|".join(re.escape(o) for o in sorted(set(options), key=len, reverse=True) if o) + ")"


_COUNT_OF = {w: n for n, ws in _COUNT_WORDS.items() for w in ws}
_SIZE_OF = {w: s for s, ws in _SIZE_WORDS.items() for w in ws}
_TEXTURE_OF = {w: t for d in (_TEXTURE_ADJ, _TEXTURE_WITH) for t, ws in d.items() for w in ws if w}
# every word for a shape, singular and plural ("discs" -> "circle"); hat_min.tutorial.grounding reads it
SHAPE_OF = {w: s for s, pairs in _SHAPE_WORDS.items() for pair in pairs for w in pair}
_TEX_ADJ_RE = _alt(w for ws in _TEXTURE_ADJ.values() for w in ws)
_TEX_WITH_RE = _alt(w for ws in _TEXTURE_WITH.values() for w in ws)
_GROUP_NAMED_RE = re.compile(
    rf"(?P<count>{_alt(_COUNT_OF)}) (?P<size>{_alt(_SIZE_OF)})(?: (?P<t1>{_TEX_ADJ_RE}))?"
    rf" (?P<colour>{_alt(COLOURS)})(?: (?P<t2>{_TEX_ADJ_RE}))? (?P<shape>{_alt(SHAPE_OF)})"
    rf"(?: (?P<t3>{_TEX_WITH_RE}))?"
)
_GROUP_RE = re.sub(r"\(\?P<\w+>", "(?:", _GROUP_NAMED_RE.pattern)


def _template_regex(template: str, noun_phrase: bool, relation: str) -> re.Pattern:
    """Compile one caption template for one relation into a full-match regex."""
    words = _RELATION_WORDS[relation]
    fill = {"fwd": _alt(words["fwd"]), "back": _alt(words["back"]), "end_F": re.escape(words["ends"][0]),
            "end_S": re.escape(words["ends"][1]), "be_F": "(?:is|are)", "be_S": "(?:is|are)",
            "it_F": "(?:it|them)", "it_S": "(?:it|them)",
            "F": f"(?P<F>{_GROUP_RE})", "S": f"(?P<S>{_GROUP_RE})"}
    prefix = f"{_alt(_PREFIXES)}?" if noun_phrase else ""
    parts = re.split(r"(\{\w+\})", template)
    body = "".join(fill[p[1:-1]] if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(prefix + body)


_PARSERS = [(rel, _template_regex(t, np_, rel)) for t, np_ in _TEMPLATES for rel in RELATIONS]


def _parse_group(text: str) -> dict:
    """Turn a group phrase back into {count, size, colour, texture, shape}."""
    m = _GROUP_NAMED_RE.fullmatch(text)
    textures = [m[k] for k in ("t1", "t2", "t3") if m and m[k]] if m else []
    if not m or len(textures) > 1:
        raise ValueError(f"not a group phrase: {text!r}")
    return {"count": _COUNT_OF[m["count"]], "size": _SIZE_OF[m["size"]], "colour": m["colour"],
            "texture": _TEXTURE_OF[textures[0]] if textures else "plain", "shape": SHAPE_OF[m["shape"]]}


_MORE_PARSERS = [regex for _, regex in _PARSERS[len(_BASE_TEMPLATES) * len(RELATIONS):]]  # MORE_TEMPLATES' regexes


def _normalise(text: str) -> str:
    """``text`` as the parsers read it: lower case, no final period, no commas, single spaces."""
    return " ".join(text.lower().strip().rstrip(".").replace(",", " ").split())


def in_more_frame(text: str) -> bool:
    """Whether ``text`` is a caption of the generator written in one of ``MORE_TEMPLATES`` (the frames whose word
    order does not tell which group is on top); False for a caption in the ten base frames and for any other text."""
    norm = _normalise(text)
    return any(regex.fullmatch(norm) for regex in _MORE_PARSERS)


def parse_caption(text: str) -> dict:
    """Read a synthetic caption back into a canonical scene {relation, subject, object}."""
    norm = _normalise(text)
    for relation, regex in _PARSERS:
        m = regex.fullmatch(norm)
        if m:
            return {"relation": relation, "subject": _parse_group(m["F"]), "object": _parse_group(m["S"])}
    raise ValueError(f"not a caption of the synthetic grammar: {text!r}")


def group_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each group's noun phrase lies in a caption: {"subject": (start, end), "object": (start, end)}.

    Character offsets into ``text`` itself, for captions as ``make_captions`` writes them (the
    subject is the top / left group, whichever comes first in the words).
    """
    norm = text.lower().rstrip(".")
    if norm != " ".join(norm.split()) or "," in norm:
        raise ValueError(f"group_spans reads the generator's captions, not {text!r}")
    for _, regex in _PARSERS:
        m = regex.fullmatch(norm)
        if m:
            return {"subject": m.span("F"), "object": m.span("S")}
    raise ValueError(f"not a caption of the synthetic grammar: {text!r}")


# ----------------------------------------------------------------------------- flips
_LEFT_RIGHT = re.compile(r"\b(left|right)(most|wards?|-hand)?\b", re.IGNORECASE)


def _swap_side(m: re.Match) -> str:
    """'left' <-> 'right' for one regex match, keeping its capitalisation."""
    word = m.group(1)
    new = "right" if word.lower() == "left" else "left"
    if word.isupper():
        new = new.upper()
    elif word[0].isupper():
        new = new.capitalize()
    return new + (m.group(2) or "")


def flip_caption(text: str) -> str:
    """Caption of the horizontally flipped image: swap left/right words, everything else kept.

    A horizontal flip turns "A to the left of B" into "A to the right of B" ("on the left" ->
    "on the right", "leftmost" -> "rightmost", ...). Apply it whenever an image is flipped for
    augmentation, or the flipped pair teaches the model the wrong relation. Caveat for real
    captions: the verb "left" ("he left the room") is swapped too.
    """
    return _LEFT_RIGHT.sub(_swap_side, text)


def flip_scene(scene: dict) -> dict:
    """Scene record of the horizontally flipped image (left/right roles and boxes swapped).

    Like `flip_caption`: "left of" becomes "right of", i.e. subject and object exchange roles.
    """
    out = dict(scene)
    side = scene.get("image_size")
    if "boxes" in scene and side:
        out["boxes"] = {r: [[side - x1, y0, side - x0, y1] for x0, y0, x1, y1 in bs]
                        for r, bs in scene["boxes"].items()}
    if scene["relation"] == "left of":
        out["subject"], out["object"] = scene["object"], scene["subject"]
        if "boxes" in out:
            out["boxes"] = {"subject": out["boxes"]["object"], "object": out["boxes"]["subject"]}
    return out
