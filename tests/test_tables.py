"""Markdown tables of results: Recall@K columns, and within-family cells "i2t / t2i"."""
import pytest
from hat_min.evaluation.tables import format_family_table, format_table

RECALL = {"i2t_r1": 50.0, "i2t_r5": 80.0, "i2t_r10": 90.0, "t2i_r1": 40.0, "t2i_r5": 70.0, "t2i_r10": 85.0,
          "rsum": 415.0}
FAMILY = {"in_family_i2t": 99.5, "in_family_t2i": 98.0, "family_i2t": 71.25, "family_t2i": 70.0,
          "family_i2t_colour": 90.0, "family_t2i_colour": 88.0, "family_i2t_role": 60.0, "family_t2i_role": 55.5}


def test_recall_table_has_a_row_per_result():
    text = format_table({"HAT": RECALL, "chance": {**RECALL, "i2t_r1": 0.1}})
    lines = text.splitlines()
    assert len(lines) == 4 and "rSum" in lines[0] and set(lines[1]) <= {"|", "-", " "}
    assert "| HAT" in lines[2] and "415.0" in lines[2] and "0.1" in lines[3]


def test_family_table_pairs_directions_and_leaves_out_rows_without_families():
    text = format_family_table({"HAT": {**RECALL, **FAMILY}, "Flickr30K model": RECALL})
    lines = text.splitlines()
    assert len(lines) == 3 and "Flickr30K" not in text
    assert "71.2 / 70.0" in lines[2] and "90.0 / 88.0" in lines[2] and "60.0 / 55.5" in lines[2]
    assert "colour binding" in lines[0] and "role" in lines[0]
    assert " - / - " in lines[2]  # a kind absent from the split (no texture swaps here)
    assert format_family_table({"Flickr30K model": RECALL}) == ""


def test_markdown_tables_are_read_under_their_headings():
    from hat_min.evaluation.tables import mean_of_cell, read_markdown_tables

    text = """# Title
intro | not a table line
#### `test` (1000 images)

| variant (i2t / t2i) | within family | Winoground group |
|---|---|---|
| demo: HAT (all levels) | 99.5 / 99.7 | 99.6 |
| chance | 25.0 / 25.0 | 16.7 |

#### `test` (1000 images)

| a | b |
|:-:|--|
| 1 | 2 |
"""
    tables = read_markdown_tables(text)
    assert list(tables) == ["`test` (1000 images)", "`test` (1000 images) (2)"]
    first = tables["`test` (1000 images)"]
    assert first == [{"variant (i2t / t2i)": "demo: HAT (all levels)", "within family": "99.5 / 99.7",
                      "Winoground group": "99.6"},
                     {"variant (i2t / t2i)": "chance", "within family": "25.0 / 25.0", "Winoground group": "16.7"}]
    assert tables["`test` (1000 images) (2)"] == [{"a": "1", "b": "2"}]
    assert mean_of_cell("99.5 / 99.7") == pytest.approx(99.6) and mean_of_cell("16.7") == 16.7


def test_the_benchmark_tables_the_notebooks_read_are_there():
    """Notebook 03 reads the ingredient tables of benchmarks/README.md: their headings and columns must stay."""
    from pathlib import Path

    from hat_min.evaluation.tables import read_markdown_tables

    tables = read_markdown_tables((Path(__file__).resolve().parents[1] / "benchmarks" / "README.md").read_text())
    for split in ("test", "test_unseen", "test_frames", "test_words"):
        rows = tables[f"`{split}` (1000 images)"]
        names = [r["variant (i2t / t2i)"] for r in rows]
        assert "demo: HAT (all levels)" in names and "chance" in names
        assert {"within family", "role", "Winoground group"} <= set(rows[0])
