"""Prepared data (``fsx prepare``'s output), read at memory speed: the aligned crops are one memory-mapped uint8
array, so a batch is a copy of its rows, never a decode.

Layout::

    DIR/manifest.json     format, fsx version, source, size, equalisation, counts and the preparation's report
    DIR/images.u8         (N, size, size, 3) uint8 RGB crops, row-major
    DIR/landmarks.f32     (N, 68, 2) little-endian float32 landmark positions in crop pixels
    DIR/labels.csv        file (the source picture), the source's labels, yaw/pitch/roll (degrees), face_score, faces

The labels table is typed like a folder's (``fsx.data.labels``), ``split`` included.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fsx.data.faces.prepare import FORMAT, VERSION
from fsx.data.labels import declared_labels, parse_label_table, read_split
from fsx.data.source import FileSource


def resize_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """Prepared crops (N, 3, S, S) in [0, 1] at ``size`` px (bilinear with antialiasing), as training reads them."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


class PreparedSource(FileSource):
    """A prepared folder as a training and evaluation source; crops are resized when ``image_size`` differs."""

    def __init__(self, root: str | Path, image_size: int = 64, name: str | None = None, declared: dict | None = None):
        self.root = Path(root)
        self.name = name or self.root.name
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            hint = " (an unfinished fsx prepare: rerun it to finish)" if (self.root / ".parts").is_dir() else ""
            raise FileNotFoundError(f"data source {self.name!r}: {manifest_path} not found{hint}")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest_path}: not valid JSON ({exc})") from None
        if self.manifest.get("format") != FORMAT or self.manifest.get("version", 0) > VERSION:
            raise ValueError(f"{manifest_path}: not fsx prepared data of version <= {VERSION}")
        n, size = self.manifest["count"], self.manifest["size"]
        images = self.root / self.manifest["images"]["file"]
        expected = n * size * size * 3
        if not images.is_file() or images.stat().st_size != expected:
            raise ValueError(f"{images}: expected {expected:,} bytes for {n} crops of {size} px")
        self.images = np.memmap(images, dtype=np.uint8, mode="r", shape=(n, size, size, 3)) if n else np.zeros(
            (0, size, size, 3), np.uint8)
        self.prepared_size, self.image_size = size, image_size
        table = self.root / "labels.csv"
        with open(table, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        if len(rows) != n:
            raise ValueError(f"{table}: {len(rows)} rows for {n} crops")
        if not n:
            raise ValueError(f"data source {self.name!r}: {self.root} holds no faces "
                             f"(report: {json.dumps(self.manifest.get('report', {}))})")
        self.labels, self.notes = parse_label_table(table, rows, declared if declared is not None else declared_labels())
        self.files = [r["file"] for r in rows]
        self.skipped: list[str] = []  # nothing to skip: fsx prepare reported its unreadable pictures
        self.split = read_split(table, rows)  # train / val / test per row, for fsx eval

    def __len__(self) -> int:
        return len(self.files)

    def landmarks(self, indices) -> torch.Tensor:
        """(len(indices), 68, 2) landmark positions in pixels of the training size."""
        marks = np.memmap(self.root / self.manifest["landmarks"]["file"], dtype="<f4", mode="r",
                          shape=(len(self), 68, 2))
        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(np.array(marks[idx])) * (self.image_size / self.prepared_size)

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx.numpy()])).permute(0, 3, 1, 2).float() / 255
        return resize_crops(x, self.image_size), {k: v[idx] for k, v in self.labels.items()}

    def __repr__(self) -> str:
        m = self.manifest
        notes = "".join(f"; {n}" for n in self.notes)
        return (f"{self.name}: {len(self)} prepared faces from {m['source']} ({m['size']} px, equalise "
                f"{m['equalize']}) labelled with {sorted(self.labels)}{notes}")
