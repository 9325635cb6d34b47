"""Pictures named on the command line: a file (any of ``IMAGE_SUFFIXES``), ``synthfaces:SPLIT:INDEX`` (a SynthFaces
sample) or ``prepared:DIR:ROW`` (a crop of ``fsx prepare``'s output), and the image files of a folder."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import torch

from fsx.data.faces.prepared import PreparedSource
from fsx.data.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, read_image
from fsx.data.synthfaces import SynthFaces


@functools.lru_cache(maxsize=4)
def _synthfaces(split: str, size: int):
    return SynthFaces(split, image_size=size, cache=False)


def load_images(specs: Sequence[str], size: int) -> torch.Tensor:
    """(N, 3, size, size) in [0, 1]; a missing or unreadable file raises ImageReadError naming it."""
    return torch.stack([load_image(str(spec), size) for spec in specs])


def load_image(spec: str, size: int) -> torch.Tensor:
    if spec.startswith("synthfaces:"):
        try:
            _, split, index = spec.split(":")
            data = _synthfaces(split, size)
            return data.images([_index(index, len(data))])[0]
        except (ValueError, IndexError, KeyError) as exc:
            raise ImageReadError(f"{spec}: not a SynthFaces sample (synthfaces:train|test:INDEX): {exc}") from None
    if spec.startswith("prepared:"):  # prepared:DIR:ROW, a crop of fsx prepare's output
        folder, _, row = spec[len("prepared:"):].rpartition(":")
        try:
            data = _prepared(folder, size)
            return data.get_batch([_index(row, len(data))])[0][0]
        except (ValueError, IndexError, FileNotFoundError) as exc:
            raise ImageReadError(f"{spec}: not a prepared crop (prepared:DIR:ROW): {exc}") from None
    return read_image(spec, size)


def _index(raw: str, n: int) -> int:
    """A sample's index as written in a picture name: 0 to n - 1 (never counted from the end)."""
    i = int(raw)
    if not 0 <= i < n:
        raise IndexError(f"index {i} is outside 0..{n - 1}")
    return i


@functools.lru_cache(maxsize=4)
def _prepared(folder: str, size: int):
    return PreparedSource(folder, image_size=size)


def list_images(folder: str | Path) -> list[str]:
    """Every image file under ``folder`` (recursively, by suffix; folders named like images are not files)."""
    folder = Path(folder)
    files = sorted(str(p) for p in folder.rglob("*") if is_image_file(p))
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files
