"""Your own data: a folder of face crops with a ``labels.csv``.

Layout::

    my_faces/
        labels.csv          # header: file[,person][,clip][,yaw,pitch,roll][,valence,arousal,category]
        img/0001.jpg ...    # paths in ``file`` are relative to the folder

Any subset of label columns may be present (a source labels only what it has, Sec. 3.9). Images are read
with Pillow, resized to the training size and kept in memory as uint8; an unreadable image is skipped and
counted, not fatal.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from fsx.data.images import ImageReadError, read_image

INT_FIELDS = ("person", "clip", "category")
FLOAT_FIELDS = ("valence", "arousal")
POSE_COLUMNS = ("yaw", "pitch", "roll")


class FolderSource:
    name = "folder"

    def __init__(self, root: str | Path, image_size: int = 64, name: str | None = None):
        self.root = Path(root)
        self.name = name or self.root.name
        table = self.root / "labels.csv"
        if not table.is_file():
            raise FileNotFoundError(f"data source {self.name!r}: {table} not found (see fsx.data.folder for the layout)")
        with open(table, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "file" not in rows[0]:
            raise ValueError(f"{table}: needs a header with a 'file' column and at least one row")
        columns = set(rows[0])
        images, kept, self.skipped = [], [], []
        for i, row in enumerate(rows):
            try:
                images.append((read_image(self.root / row["file"], image_size) * 255).round().to(torch.uint8))
                kept.append(row)
            except ImageReadError as exc:
                self.skipped.append(str(exc))
        if not kept:
            raise ValueError(f"data source {self.name!r}: none of the {len(rows)} images in {table} could be read")
        self.images_u8 = torch.stack(images)
        self.labels: dict[str, torch.Tensor] = {}
        try:
            for f in INT_FIELDS:
                if f in columns:
                    self.labels[f] = torch.tensor([int(r[f]) for r in kept])
            for f in FLOAT_FIELDS:
                if f in columns:
                    self.labels[f] = torch.tensor([float(r[f]) for r in kept])
            if all(c in columns for c in POSE_COLUMNS):
                self.labels["pose"] = torch.tensor([[float(r[c]) for c in POSE_COLUMNS] for r in kept])
        except ValueError as exc:
            raise ValueError(f"{table}: a label value is not a number: {exc}") from None
        self.files = [r["file"] for r in kept]

    def __len__(self) -> int:
        return len(self.files)

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images_u8[idx].float() / 255, {k: v[idx] for k, v in self.labels.items()}

    def __repr__(self) -> str:
        return f"{self.name}: {len(self)} images from {self.root} labelled with {sorted(self.labels)}" + (
            f" ({len(self.skipped)} unreadable, skipped)" if self.skipped else "")
