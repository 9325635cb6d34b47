"""Label tables: the columns of a ``labels.csv`` typed by what the installed attributes declare.

Every column is kept. A column an attribute declares is read as that label's kind (``fsx.attributes.Label``:
category, scalar, vector, group); a vector label is the join of its named columns (pose: yaw, pitch, roll, in
degrees); any other column is kept as a float label when every value parses, and reported otherwise. An empty
cell is a missing label for that row only (NaN, or -1 for integer kinds); a value that does not parse is an
error naming the file, the row and the column.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

from fsx.attributes.base import Label
from fsx.plugins import get_registry

RESERVED = ("file", "split")  # columns that are not labels: the image, and train/val/test for fsx eval
SPLITS = ("train", "val", "test")


def declared_labels(attributes: Iterable | None = None) -> dict[str, Label]:
    """name -> Label over the given attributes (default: every installed one); the first declaration wins."""
    if attributes is None:
        attributes = get_registry().attributes.values()
    out: dict[str, Label] = {}
    for a in attributes:
        for label in a.labels:
            out.setdefault(label.name, label)
    return out


class LabelTableError(ValueError):
    """A labels table with a value that does not parse; the message names the file, row and column."""


def _float(table: Path, row: int, column: str, raw: str) -> float:
    if raw == "":
        return float("nan")
    try:
        value = float(raw)
    except ValueError:
        raise LabelTableError(f"{table}, row {row}, column {column!r}: {raw!r} is not a number") from None
    if math.isinf(value):  # it would parse and then turn every loss it reaches into inf or NaN
        raise LabelTableError(f"{table}, row {row}, column {column!r}: {raw!r} is not a finite number")
    return value


def _column(rows: Sequence[Mapping[str, str]], column: str) -> list[str]:
    return [(r.get(column) or "").strip() for r in rows]


def parse_label_table(table: Path, rows: Sequence[Mapping[str, str]], declared: Mapping[str, Label],
                      first_row: int = 2) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Typed label tensors for ``rows`` (dicts of a csv.DictReader) -> (labels, notes on columns left out).

    ``first_row`` is the file's line number of ``rows[0]`` (2 after a header), so errors point at the line."""
    table = Path(table)
    columns = [c for c in (rows[0].keys() if rows else ()) if c is not None]
    labels: dict[str, torch.Tensor] = {}
    used: set[str] = set(RESERVED)
    for label in declared.values():
        if label.kind == "vector":
            if not all(c in columns for c in label.columns):
                continue
            values = [[_float(table, i + first_row, c, raw) for c, raw in zip(label.columns, vals)]
                      for i, vals in enumerate(zip(*(_column(rows, c) for c in label.columns)))]
            labels[label.name] = torch.tensor(values, dtype=torch.float32).reshape(len(rows), len(label.columns))
            used.update(label.columns)
        elif label.name in columns:
            raw = _column(rows, label.name)
            labels[label.name] = _typed(table, label, raw, first_row)
            used.add(label.name)
    notes = []
    for column in columns:
        if column in used or column in labels:
            continue
        raw = _column(rows, column)
        try:
            labels[column] = torch.tensor([float(v) if v else float("nan") for v in raw], dtype=torch.float32)
            for i, v in enumerate(raw):
                if v and math.isinf(float(v)):
                    raise LabelTableError(f"{table}, row {i + first_row}, column {column!r}: {v!r} is not a finite number")
        except LabelTableError:
            raise
        except ValueError:
            bad = next(i for i, v in enumerate(raw) if v and not _parses(v))
            notes.append(f"column {column!r} left out: no installed attribute declares it and it is not numeric "
                         f"({raw[bad]!r} in row {bad + first_row})")
    return labels, notes


def read_split(table: Path, rows: Sequence[Mapping[str, str]], first_row: int = 2) -> list[str] | None:
    """The optional ``split`` column (train / val / test per row, which ``fsx eval`` fits and measures on), or
    None without one; a value outside SPLITS is an error naming the file, row and column."""
    if not rows or "split" not in rows[0]:
        return None
    tags = [(row.get("split") or "").strip().lower() for row in rows]
    bad = next((i for i, t in enumerate(tags) if t not in SPLITS), None)
    if bad is not None:
        raise LabelTableError(f"{table}, row {bad + first_row}, column 'split': {tags[bad]!r} is not one of "
                              f"{', '.join(SPLITS)}")
    return tags


def _parses(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _typed(table: Path, label: Label, raw: list[str], first_row: int) -> torch.Tensor:
    if label.kind == "scalar":
        return torch.tensor([_float(table, i + first_row, label.name, v) for i, v in enumerate(raw)], dtype=torch.float32)
    if label.kind == "category":
        out = []
        for i, v in enumerate(raw):
            if v == "":
                out.append(-1)
                continue
            try:
                value = float(v)
            except ValueError:
                value = float("nan")
            if not value.is_integer() or value < 0:
                raise LabelTableError(f"{table}, row {i + first_row}, column {label.name!r}: {v!r} is not a class "
                                      f"number (0, 1, 2, ...)")
            out.append(int(value))
        return torch.tensor(out, dtype=torch.long)
    # group: integer ids as they are; any other ids numbered in sorted order (the same file gives the same ids)
    present = [v for v in raw if v]
    if all(_is_int(v) for v in present):
        return torch.tensor([int(v) if v else -1 for v in raw], dtype=torch.long)
    ids = {v: i for i, v in enumerate(sorted(set(present)))}
    return torch.tensor([ids[v] if v else -1 for v in raw], dtype=torch.long)


def _is_int(v: str) -> bool:
    try:
        return int(v) >= 0
    except ValueError:
        return False
