"""Your own data: a folder of face crops with a ``labels.csv``.

Layout::

    my_faces/
        labels.csv          # header: file[,split],<any label columns>
        img/0001.jpg ...    # paths in ``file`` are relative to the folder

Every column besides ``file`` is a label, typed by what the installed attributes declare (``fsx.data.labels``):
``person`` and ``clip`` are group ids (any strings), ``yaw``, ``pitch``, ``roll`` (degrees) form ``pose``,
``valence`` and ``arousal`` are floats in [-1, 1], ``category`` an AffectNet class 0-7, and a plugin's own
labels (``glasses``, ``age``, ...) are read as it declares them. An empty cell leaves that row unlabelled for
that field only (Sec. 3.9). An optional ``split`` column (train / val / test) tells ``fsx eval`` which rows fit
its probes and which it measures on. Images are read with Pillow, resized to the training size and kept in memory as
uint8; an unreadable image is skipped and counted, not fatal.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from fsx.data.images import ImageReadError, read_image
from fsx.data.labels import SPLITS, declared_labels, parse_label_table


def read_rows(root: Path, name: str) -> tuple[Path, list[dict[str, str]]]:
    """The rows of ``root/labels.csv`` as strings (checked for a ``file`` column), and the table's path."""
    table = Path(root) / "labels.csv"
    if not table.is_file():
        raise FileNotFoundError(f"data source {name!r}: {table} not found (see fsx.data.folder for the layout)")
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "file" not in rows[0]:
        raise ValueError(f"{table}: needs a header with a 'file' column and at least one row")
    return table, rows


class FolderSource:
    name = "folder"

    def __init__(self, root: str | Path, image_size: int = 64, name: str | None = None, declared: dict | None = None):
        self.root = Path(root)
        self.name = name or self.root.name
        table, rows = read_rows(self.root, self.name)
        labels, self.notes = parse_label_table(table, rows, declared if declared is not None else declared_labels())
        images, kept, self.skipped = [], [], []
        for i, row in enumerate(rows):
            try:
                images.append((read_image(self.root / row["file"], image_size) * 255).round().to(torch.uint8))
                kept.append(i)
            except ImageReadError as exc:
                self.skipped.append(str(exc))
        if not kept:
            raise ValueError(f"data source {self.name!r}: none of the {len(rows)} images in {table} could be read")
        self.images_u8 = torch.stack(images)
        idx = torch.tensor(kept)
        self.labels: dict[str, torch.Tensor] = {k: v[idx] for k, v in labels.items()}
        self.files = [rows[i]["file"] for i in kept]
        self.split = None  # train / val / test per image, from an optional ``split`` column (used by fsx eval)
        if "split" in rows[0]:
            tags = [(rows[i].get("split") or "").strip().lower() for i in range(len(rows))]
            bad = next((i for i, t in enumerate(tags) if t not in SPLITS), None)
            if bad is not None:
                raise ValueError(f"{table}, row {bad + 2}, column 'split': {tags[bad]!r} is not one of {', '.join(SPLITS)}")
            self.split = [tags[i] for i in kept]

    def __len__(self) -> int:
        return len(self.files)

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images_u8[idx].float() / 255, {k: v[idx] for k, v in self.labels.items()}

    def __repr__(self) -> str:
        notes = "".join(f"; {n}" for n in self.notes)
        return f"{self.name}: {len(self)} images from {self.root} labelled with {sorted(self.labels)}{notes}"
