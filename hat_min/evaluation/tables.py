"""Results as Markdown tables: Recall@K, and the within-family accuracies of the generated scenes.

    print(format_table({"HAT": evaluate(model, test)}))                # R@1 R@5 R@10 both ways, rSum
    print(format_family_table({"HAT": result, **result["baselines"]}))  # cells "i2t / t2i", percent
    print(format_winoground_table({"HAT": result, **result["baselines"]}))  # text, image, group (by kind)
"""
from __future__ import annotations

from typing import Any

from .compositional import KINDS

_COLUMNS = (("i2t R@1", "i2t_r1"), ("i2t R@5", "i2t_r5"), ("i2t R@10", "i2t_r10"),
            ("t2i R@1", "t2i_r1"), ("t2i R@5", "t2i_r5"), ("t2i R@10", "t2i_r10"), ("rSum", "rsum"))


def format_table(results: dict[str, Any]) -> str:
    """A Recall@K table (Markdown): one row per model / protocol, R@1 R@5 R@10 for i2t and t2i, and rSum.

    ``results`` is one ``evaluate`` result or a dict {row name: result}.
    """
    rows = {"result": results} if "rsum" in results else results
    table = [["model", *(head for head, _ in _COLUMNS)]]
    table += [[str(name), *(_cell(r.get(key)) for _, key in _COLUMNS)] for name, r in rows.items()]
    return _markdown(table)


def format_family_table(results: dict[str, Any]) -> str:
    """The family metrics as a Markdown table, one row per result, each cell "i2t / t2i" (percent).

    Columns: top-1 in the right family, then within the family (4-way), then two-way by kind of
    swap. ``results`` is one ``evaluate`` result or a dict {row name: result}; rows without
    family metrics are left out, and "" is returned when none has them.
    """
    rows = {"result": results} if "rsum" in results else results
    heads = [("top-1 in family", "in_family"), ("within family", "family")]
    heads += [(_kind_label(kind), f"family_{{}}_{kind}") for kind in KINDS]
    table = [["model (i2t / t2i)", *(head for head, _ in heads)]]
    for name, r in rows.items():
        if "family_i2t" not in r:
            continue
        cells = []
        for _, key in heads:
            i2t, t2i = (r.get(key.format(d) if "{}" in key else f"{key}_{d}") for d in ("i2t", "t2i"))
            cells.append(f"{_cell(i2t)} / {_cell(t2i)}")
        table.append([str(name), *cells])
    return _markdown(table) if len(table) > 1 else ""


def format_winoground_table(results: dict[str, Any]) -> str:
    """Winoground's text, image and group scores, and the group score by kind of swap, one row per result.

    Same rows as ``format_family_table``; "" when no result has the scores.
    """
    rows = {"result": results} if "rsum" in results else results
    heads = [("text", "winoground_text"), ("image", "winoground_image"), ("group", "winoground_group")]
    heads += [(f"group: {_kind_label(kind)}", f"winoground_group_{kind}") for kind in KINDS]
    table = [["model", *(head for head, _ in heads)]]
    table += [[str(name), *(_cell(r.get(key)) for _, key in heads)] for name, r in rows.items()
              if "winoground_group" in r]
    return _markdown(table) if len(table) > 1 else ""


def format_split_table(results: dict[str, Any]) -> str:
    """One model on several splits (rows {split: result}): R@1 both ways, within-family accuracy, Winoground group.

    With each result's pooled reference (``baselines=True``) beside it where it has one.
    """
    heads = [("i2t R@1", "i2t_r1"), ("t2i R@1", "t2i_r1"), ("within family i2t", "family_i2t"),
             ("within family t2i", "family_t2i"), ("Winoground group", "winoground_group")]
    table = [["split", *(head for head, _ in heads)]]
    for name, r in results.items():
        table.append([str(name), *(_cell(r.get(key)) for _, key in heads)])
        pooled = r.get("baselines", {}).get("pooled")
        if pooled:
            table.append([f"{name}, pooled (reference)", *(_cell(pooled.get(key)) for _, key in heads)])
    return _markdown(table)


def _kind_label(kind: str) -> str:
    """A kind of swap in a column head: "role", "both", "colour binding"."""
    return kind if kind in ("role", "both") else f"{kind} binding"


def _markdown(table: list[list[str]]) -> str:
    widths = [max(len(line[c]) for line in table) for c in range(len(table[0]))]
    lines = [[cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths))]
             for line in table]
    lines.insert(1, ["-" * w for w in widths])
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def metric_label(name: str) -> str:
    """A metric's name in words, for tables, figures and sentences: i2t_r1 -> 'i2t R@1', rsum -> 'rSum', family_i2t -> 'within-family i2t', family_t2i_role -> 'within-family t2i (role)'."""
    if name.startswith("family_"):
        parts = name.split("_")[1:]
        return f"within-family {parts[0]}" + (f" ({parts[1]})" if len(parts) > 1 else "")
    return "rSum" if name == "rsum" else name.replace("_r", " R@")


def read_markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The pipe tables of a Markdown text, each under the last heading before it: {heading: [{column: cell}]}.

    A heading is the text of a ``#`` line without its hashes; a second table under one heading gets
    " (2)" appended. Used to show measured results (benchmarks/README.md) in the notebooks.
    """
    tables: dict[str, list[dict[str, str]]] = {}
    heading, header, rows = "", None, None
    for line in [*text.splitlines(), ""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if header is None:
                header, rows = cells, []
            elif not all(set(c) <= set("-: ") for c in cells):  # skip the |---| line
                rows.append(dict(zip(header, cells)))
            continue
        if header is not None:  # the table ended
            name = heading if heading not in tables else f"{heading} ({sum(k.startswith(heading) for k in tables) + 1})"
            tables[name] = rows
            header, rows = None, None
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
    return tables


def mean_of_cell(cell: str) -> float:
    """A table cell "i2t / t2i" (or one number) as the mean of its numbers: "99.5 / 99.7" -> 99.6."""
    numbers = [float(part) for part in cell.split("/")]
    return sum(numbers) / len(numbers)
