"""Pictures named on the command line: a file (any of ``IMAGE_SUFFIXES``) or one sample of a data source
(``synthfaces:SPLIT:INDEX``, ``prepared:DIR:ROW``: the grammar of ``fsx.data.sources``), and the image files of a
folder.

A raw photo is aligned as ``fsx prepare`` aligns it (:class:`PhotoAligner`: the face detected, aligned onto the
template, equalised, cropped at prepare's size and resized as a prepared folder is read) when an aligner is given;
SynthFaces samples and prepared crops are aligned already."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fsx.data.faces.analyser import FaceAnalyser, FacesExtraMissing, Rejected
from fsx.data.faces.prepared import resize_crops
from fsx.data.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, read_image, read_rgb
from fsx.data.sources import parse_picture


class PhotoAligner:
    """Raw photos through ``fsx prepare``'s pipeline at its defaults (dlib's HOG detector, the landmark template,
    luminance equalisation, 128 px crops), resized to the model's size as ``PreparedSource`` resizes them: a photo
    then encodes as its prepared crop does. Needs the ``faces`` extra (FacesExtraMissing otherwise)."""

    def __init__(self, size: int = 128, equalize: str = "luminance"):
        self.size, self.analyser = size, FaceAnalyser(size=size, equalize=equalize)

    def __call__(self, path: str, size: int) -> torch.Tensor:
        try:
            face = self.analyser.analyse(read_rgb(path))
        except Rejected as exc:
            raise ImageReadError(f"{path}: no face to align ({exc.reason}); --no-align reads the whole picture") from None
        x = torch.from_numpy(np.ascontiguousarray(face.crop)).permute(2, 0, 1)[None].float() / 255
        return resize_crops(x, size)[0]


def photo_aligner() -> PhotoAligner | None:
    """The aligner, or None where the ``faces`` extra is not installed."""
    try:
        return PhotoAligner()
    except FacesExtraMissing:
        return None


def load_images(specs: Sequence[str], size: int, aligner: PhotoAligner | None = None) -> torch.Tensor:
    """(N, 3, size, size) in [0, 1]; a missing or unreadable file raises ImageReadError naming it."""
    return torch.stack([load_image(str(spec), size, aligner) for spec in specs])


def load_image(spec: str, size: int, aligner: PhotoAligner | None = None) -> torch.Tensor:
    """One picture in [0, 1]: a sample of a data source named as ``fsx.data.sources.parse_picture`` reads it, or
    an image file (aligned when an aligner is given)."""
    sample = parse_picture(spec, size)
    if sample is not None:
        return sample
    return aligner(spec, size) if aligner is not None else read_image(spec, size)


def list_images(folder: str | Path) -> list[str]:
    """Every image file under ``folder`` (recursively, by suffix; folders named like images are not files)."""
    folder = Path(folder)
    files = sorted(str(p) for p in folder.rglob("*") if is_image_file(p))
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files
