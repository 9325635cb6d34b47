"""Loaders for the paper's data sets in their official on-disk layouts.

Images are decoded lazily, batch by batch (cropped to the face box where the format gives one, resized to the
training size); an unreadable image is dropped from its batch and counted in ``skipped``, never fatal.
Face detection, landmark alignment and histogram equalisation (Sec. 4.2) are not redone here: CelebA's
``img_align_celeba`` is already aligned, and AffectNet and VGGFace2 come with face boxes.

    celeba=/data/celeba         img_align_celeba/, identity_CelebA.txt, list_eval_partition.txt
    affectnet=/data/affectnet   training.csv (or validation.csv) + the images it lists
    vggface2=/data/vggface2     train/n000001/0001_01.jpg, bb_landmark/loose_bb_train.csv
    voxceleb=/data/voxceleb     <identity>/<video>/<clip>/<frame>.jpg
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from fsx.data.folder import read_image


class ImageListSource:
    """Files with labels (and optional face boxes), read on demand."""

    def __init__(self, name: str, files: list[Path], labels: dict, image_size: int, boxes: list | None = None):
        if not files:
            raise ValueError(f"data source {name!r}: no images found")
        self.name, self.files, self.labels, self.image_size, self.boxes = name, files, labels, image_size, boxes
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, i: int) -> torch.Tensor:
        return read_image(self.files[i], self.image_size, self.boxes[i] if self.boxes is not None else None)

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        images, kept = [], []
        for i in [int(i) for i in indices]:
            try:
                images.append(self._read(i))
                kept.append(i)
            except ValueError as exc:  # read_image names the file
                self.skipped.append(str(exc))
        if not images:
            raise ValueError(f"data source {self.name!r}: no readable image in this batch ({self.skipped[-1]})")
        idx = torch.tensor(kept)
        return torch.stack(images), {k: v[idx] for k, v in self.labels.items()}

    def __repr__(self) -> str:
        return f"{self.name}: {len(self)} images labelled with {sorted(self.labels)} ({len(self.skipped)} skipped)"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing ({what})")
    return path


def celeba(root, image_size: int = 64, split: str = "train", name: str = "celeba") -> ImageListSource:
    """CelebA identities (label ``person``) from the aligned images; split by list_eval_partition.txt."""
    root = Path(root)
    part = {"train": "0", "val": "1", "test": "2"}[split]
    ids = dict(line.split() for line in _need(root / "identity_CelebA.txt", "CelebA identities").read_text().splitlines() if line.strip())
    parts = dict(line.split() for line in _need(root / "list_eval_partition.txt", "CelebA partition").read_text().splitlines() if line.strip())
    names = sorted(n for n, p in parts.items() if p == part and n in ids)
    files = [_need(root / "img_align_celeba", "CelebA images") / n for n in names]
    return ImageListSource(name, files, {"person": torch.tensor([int(ids[n]) for n in names])}, image_size)


def affectnet(root, image_size: int = 64, split: str = "train", name: str = "affectnet") -> ImageListSource:
    """AffectNet expressions: ``category`` 0-7, ``valence`` and ``arousal`` in [-1, 1]; categories 8-10 (none,
    uncertain, no-face) are left out. Faces are cropped to the CSV's face box."""
    root = Path(root)
    table = _need(root / ("training.csv" if split == "train" else "validation.csv"), "AffectNet annotations")
    files, boxes, cat, val, aro = [], [], [], [], []
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            c = int(row["expression"])
            if c > 7:
                continue
            files.append(root / row["subDirectory_filePath"])
            boxes.append(tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height")))
            cat.append(c)
            val.append(float(row["valence"]))
            aro.append(float(row["arousal"]))
    labels = {"category": torch.tensor(cat), "valence": torch.tensor(val), "arousal": torch.tensor(aro)}
    return ImageListSource(name, files, labels, image_size, boxes)


def vggface2(root, image_size: int = 64, split: str = "train", name: str = "vggface2") -> ImageListSource:
    """VGGFace2 identities, cropped to the loose face boxes of bb_landmark/loose_bb_<split>.csv."""
    root = Path(root)
    table = _need(root / "bb_landmark" / f"loose_bb_{split}.csv", "VGGFace2 boxes")
    files, boxes, person = [], [], []
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            key = row["NAME_ID"]
            files.append(root / split / f"{key}.jpg")
            boxes.append(tuple(int(float(row[k])) for k in ("X", "Y", "W", "H")))
            person.append(int(key.split("/")[0].lstrip("n")))
    return ImageListSource(name, files, {"person": torch.tensor(person)}, image_size, boxes)


def voxceleb(root, image_size: int = 64, name: str = "voxceleb") -> ImageListSource:
    """VoxCeleb face frames: ``person`` from the identity folder, ``clip`` from identity/video/clip (style)."""
    root = Path(root)
    files = sorted(p for p in root.glob("*/*/*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    people, clips = {}, {}
    person, clip = [], []
    for f in files:
        ident, video, c = f.parts[-4:-1]
        person.append(people.setdefault(ident, len(people)))
        clip.append(clips.setdefault((ident, video, c), len(clips)))
    return ImageListSource(name, files, {"person": torch.tensor(person), "clip": torch.tensor(clip)}, image_size)


def lfw_pairs(root) -> list[tuple[Path, Path, bool, int]]:
    """LFW's pairs.txt: (image 1, image 2, same person, fold) for the 10-fold verification protocol."""
    root = Path(root)
    lines = _need(root / "pairs.txt", "LFW pairs").read_text().splitlines()
    folds, per = (int(v) for v in lines[0].split())
    img = lambda n, i: root / "lfw" / n / f"{n}_{int(i):04d}.jpg"  # noqa: E731
    out, k = [], 1
    for fold in range(folds):
        for _ in range(per):
            name, a, b = lines[k].split("\t")
            out.append((img(name, a), img(name, b), True, fold))
            k += 1
        for _ in range(per):
            n1, a, n2, b = lines[k].split("\t")
            out.append((img(n1, a), img(n2, b), False, fold))
            k += 1
    return out


LOADERS = {"celeba": celeba, "affectnet": affectnet, "vggface2": vggface2, "voxceleb": voxceleb}
