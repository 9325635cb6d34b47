"""Your own data: a folder of face crops with a ``labels.csv``.

Layout::

    my_faces/
        labels.csv          # header: file[,split],<any label columns>
        img/0001.jpg ...    # paths in ``file`` are relative to the folder, and stay inside it

Every column besides ``file`` is a label, typed by what the installed attributes declare (``fsx.data.labels``):
``person`` and ``clip`` are group ids (any strings), ``yaw``, ``pitch``, ``roll`` (degrees) form ``pose``,
``valence`` and ``arousal`` are floats in [-1, 1], ``category`` an AffectNet class 0-7, and a plugin's own
labels (``glasses``, ``age``, ...) are read as it declares them. An empty cell leaves that row unlabelled for
that field only (Sec. 3.9). An optional ``split`` column (train / val / test) tells ``fsx eval`` which rows fit
its probes and which it measures on. Images are read with Pillow, batch by batch, and resized to the training
size (``fsx prepare`` aligns them once and makes a source read at memory speed); an unreadable image is skipped
and counted, not fatal.

A ``file`` that leaves the folder (an absolute path, or one through ``..``) is refused, so that a table from
elsewhere cannot make fsx read, and a model learn from, any file the user can read. A source given as
``NAME=outside:FOLDER`` asks for such files to be read. A link inside the folder is followed: whoever made it
chose what it points at.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePath

from fsx.data.labels import declared_labels, parse_label_table, read_split
from fsx.data.real import ImageListSource


def read_rows(root: Path, name: str) -> tuple[Path, list[dict[str, str]]]:
    """The rows of ``root/labels.csv`` as strings (checked for a ``file`` column), and the table's path."""
    table = Path(root) / "labels.csv"
    if not table.is_file():
        raise FileNotFoundError(f"data source {name!r}: {table} not found (see fsx.data.folder for the layout)")
    with open(table, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "file" not in rows[0]:
        raise ValueError(f"{table}: needs a header with a 'file' column and at least one row")
    return table, rows


OUTSIDE = "outside:"  # NAME=outside:FOLDER reads rows whose file lies outside FOLDER


def folder_target(target: str | Path) -> tuple[Path, bool]:
    """A folder source's path as given (``FOLDER`` or ``outside:FOLDER``): the folder, and whether its rows may
    name files outside it."""
    text = str(target)
    outside = text.startswith(OUTSIDE)
    return Path(text[len(OUTSIDE):] if outside else text), outside


def row_files(table: Path, rows: list[dict[str, str]], outside: bool = False) -> list[Path]:
    """Each row's ``file`` joined to the table's folder; one that leaves the folder is refused (row and value
    named) unless ``outside``."""
    root = table.parent
    files = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        rel = PurePath(row["file"] or "")
        if not outside and (rel.is_absolute() or ".." in rel.parts):
            raise ValueError(f"{table}, row {number}: file {row['file']!r} lies outside {root}; give the source as "
                             f"NAME={OUTSIDE}{root} to read files outside its folder")
        files.append(root / rel)
    return files


class FolderSource(ImageListSource):
    """A folder with labels.csv, read lazily like the paper's data sets (``fsx.data.real``)."""

    def __init__(self, root: str | Path, image_size: int = 64, name: str | None = None, declared: dict | None = None,
                 outside: bool = False):
        root = Path(root)
        name = name or root.name
        table, rows = read_rows(root, name)
        files = row_files(table, rows, outside)
        labels, notes = parse_label_table(table, rows, declared if declared is not None else declared_labels())
        super().__init__(name, files, labels, image_size)
        self.root, self.notes = root, notes
        self.split = read_split(table, rows)  # train / val / test per row, for fsx eval

    def __repr__(self) -> str:
        notes = "".join(f"; {n}" for n in self.notes)
        return f"{self.name}: {len(self)} images from {self.root} labelled with {sorted(self.labels)}{notes}"
