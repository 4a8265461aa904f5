"""Config fields against their annotated types: one walker for HATConfig, TrainConfig and ``--set``.

``problems(config)`` lists the fields of a dataclass whose values are not of their annotated type, one
sentence each, so that a config built with ``embed_dim="512"`` or ``lambda_softmax=float("nan")`` is
refused by name instead of failing later inside torch. The rules: an ``int`` is an integer and not a
bool (``2.5`` and ``True`` are refused); a ``float`` is any finite real number (ints accepted, NaN and
infinities refused); ``bool`` and ``str`` are exactly that; ``tuple[int, ...]`` and
``tuple[float, float]`` are tuples of those lengths and kinds (the configs turn JSON lists into tuples
before checking); ``X | None`` is either. ``describe`` and ``example`` name a type in words and as JSON
for these messages and for ``--set``'s (``hat_min.__main__`` turns ``--set`` text into these types).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing


def is_union(hint) -> bool:
    """Whether ``hint`` is ``X | Y`` (``int | None``, ``typing.Optional[int]``)."""
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def tuple_kinds(hint, n: int) -> list | None:
    """The item types of ``n`` items under the tuple type ``hint`` (``tuple[int, ...]`` any n, ``tuple[float,
    float]`` two), or None when ``n`` items cannot be that tuple."""
    args = typing.get_args(hint)
    kinds = [args[0]] * n if args[-1:] == (Ellipsis,) else list(args)
    return kinds if len(kinds) == n else None


def describe(hint) -> str:
    """A type in words: ``int``, ``float``, ``[[int, int], ...]``, ``int or null``."""
    args = typing.get_args(hint)
    if is_union(hint):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if typing.get_origin(hint) is tuple:
        return "[" + ", ".join("..." if a is Ellipsis else describe(a) for a in args) + "]"
    return {bool: "true/false"}.get(hint, getattr(hint, "__name__", str(hint)))


def example(hint) -> str:
    """A JSON value of the type ``hint``: ``3``, ``0.5``, ``[[3, 3]]``."""
    args = typing.get_args(hint)
    if is_union(hint):
        return example(next(a for a in args if a is not type(None)))
    if typing.get_origin(hint) is tuple:
        return "[" + ", ".join(example(a) for a in args if a is not Ellipsis) + "]"
    return {int: "3", float: "0.5", bool: "true", str: '"text"'}.get(hint, "null")


def matches(value, hint) -> bool:
    """Whether ``value`` is of the annotated type ``hint`` (the rules in the module docstring)."""
    if is_union(hint):
        return any(matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        kinds = tuple_kinds(hint, len(value)) if isinstance(value, tuple) else None
        return kinds is not None and all(matches(v, kind) for v, kind in zip(value, kinds))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True  # a type these rules do not cover (Any): the config's own checks decide


def problems(config) -> list[str]:
    """One sentence per field of the dataclass instance ``config`` whose value is not of its annotated type."""
    hints = typing.get_type_hints(type(config))
    out = []
    for field in dataclasses.fields(config):
        value, hint = getattr(config, field.name), hints[field.name]
        if not matches(value, hint):
            finite = " (finite)" if isinstance(value, numbers.Real) and not math.isfinite(value) else ""
            out.append(f"{field.name} must be {describe(hint)}{finite}, e.g. {example(hint)}, got {value!r}")
    return out
