"""Loaders for the paper's data sets in their official on-disk layouts.

Images are decoded lazily, batch by batch (cropped to the face box where the format gives one, resized to the
training size); an unreadable image is dropped from its batch and counted in ``skipped``, never fatal.
Face detection, landmark alignment and histogram equalisation (Sec. 4.2) are not redone here: CelebA's
``img_align_celeba`` is already aligned, and AffectNet and VGGFace2 come with face boxes.

    celeba=/data/celeba         img_align_celeba/, identity_CelebA.txt, list_eval_partition.txt
    affectnet=/data/affectnet   training.csv (or validation.csv) + the images it lists
    vggface2=/data/vggface2     train/n000001/0001_01.jpg, bb_landmark/loose_bb_train.csv
    voxceleb=/data/voxceleb     <identity>/<video>/<clip>/<frame>.jpg
    lfw=/data/lfw               lfw/<name>/<name>_0001.jpg (+ pairs.txt for verification)
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from fsx.data.images import IMAGE_SUFFIXES, ImageReadError, read_image
from fsx.data.source import FileSource


class ImageListSource(FileSource):
    """Files with labels (and optional face boxes), read on demand."""

    def __init__(self, name: str, files: list[Path], labels: dict, image_size: int, boxes: list | None = None,
                 note: str = ""):
        if not files:
            raise ValueError(f"data source {name!r}: no images found")
        self.name, self.files, self.labels, self.image_size, self.boxes = name, files, labels, image_size, boxes
        self.note = note  # where the images were found, for the start-up report
        self.skipped: list[str] = []  # each unreadable file once, with its reason, in the order met
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, i: int) -> torch.Tensor:
        return read_image(self.files[i], self.image_size, self.boxes[i] if self.boxes is not None else None)

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        images, kept = [], []
        for i in [int(i) for i in indices]:
            if i in self._bad:  # known unreadable: not read (nor counted) again
                continue
            try:
                images.append(self._read(i))
                kept.append(i)
            except ImageReadError as exc:  # it names the file
                self._bad.add(i)
                self.skipped.append(str(exc))
        if not images:
            last = self.skipped[-1] if self.skipped else "none"
            raise ValueError(f"data source {self.name!r}: no readable image in this batch (last unreadable: {last})")
        idx = torch.tensor(kept)
        return torch.stack(images), {k: v[idx] for k, v in self.labels.items()}

    def __repr__(self) -> str:
        where = f"; {self.note}" if self.note else ""
        return f"{self.name}: {len(self)} images labelled with {sorted(self.labels)}{where}"


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


# Where the AffectNet download keeps the images that ``subDirectory_filePath`` is relative to (the archives
# unpack to either of the first two; some copies keep the archive's own top folder).
AFFECTNET_IMAGE_FOLDERS = ("Manually_Annotated_Images", "Automatically_Annotated_Images",
                           "Manually_Annotated/Manually_Annotated_Images", "")


def _affectnet_image_root(root: Path, table: Path, relative: list[str], probe: int = 20) -> Path:
    """The folder under ``root`` that holds the images the CSV lists (judged by its first ``probe`` rows)."""
    sample = relative[:probe]
    for folder in AFFECTNET_IMAGE_FOLDERS:
        base = root / folder if folder else root
        if base.is_dir() and any((base / p).is_file() for p in sample):
            return base
    tried = ", ".join(str(root / f) if f else str(root) for f in AFFECTNET_IMAGE_FOLDERS)
    raise FileNotFoundError(f"{table}: none of its first {len(sample)} images (e.g. {sample[0]!r}) is under any "
                            f"of {tried}")


def affectnet(root, image_size: int = 64, split: str = "train", name: str = "affectnet") -> ImageListSource:
    """AffectNet expressions: ``category`` 0-7, ``valence`` and ``arousal`` in [-1, 1]; categories 8-10 (none,
    uncertain, no-face) are left out. Faces are cropped to the CSV's face box. The images are looked for under
    ``Manually_Annotated_Images/`` (the download's layout), ``Automatically_Annotated_Images/`` or the root."""
    root = Path(root)
    table = _need(root / ("training.csv" if split == "train" else "validation.csv"), "AffectNet annotations")
    relative, boxes, cat, val, aro = [], [], [], [], []
    with open(table, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            c = int(row["expression"])
            if c > 7:
                continue
            relative.append(row["subDirectory_filePath"])
            boxes.append(tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height")))
            cat.append(c)
            val.append(float(row["valence"]))
            aro.append(float(row["arousal"]))
    if not relative:
        raise ValueError(f"{table}: no rows with an expression category 0-7")
    base = _affectnet_image_root(root, table, relative)
    labels = {"category": torch.tensor(cat), "valence": torch.tensor(val), "arousal": torch.tensor(aro)}
    return ImageListSource(name, [base / p for p in relative], labels, image_size, boxes, note=f"images under {base}")


def vggface2(root, image_size: int = 64, split: str = "train", name: str = "vggface2") -> ImageListSource:
    """VGGFace2 identities, cropped to the loose face boxes of bb_landmark/loose_bb_<split>.csv."""
    root = Path(root)
    table = _need(root / "bb_landmark" / f"loose_bb_{split}.csv", "VGGFace2 boxes")
    files, boxes, person = [], [], []
    with open(table, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            key = row["NAME_ID"]
            files.append(root / split / f"{key}.jpg")
            boxes.append(tuple(int(float(row[k])) for k in ("X", "Y", "W", "H")))
            person.append(int(key.split("/")[0].lstrip("n")))
    return ImageListSource(name, files, {"person": torch.tensor(person)}, image_size, boxes)


def voxceleb(root, image_size: int = 64, name: str = "voxceleb") -> ImageListSource:
    """VoxCeleb face frames: ``person`` from the identity folder, ``clip`` from identity/video/clip (style)."""
    root = Path(root)
    files = sorted(p for p in root.glob("*/*/*/*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    people, clips = {}, {}
    person, clip = [], []
    for f in files:
        ident, video, c = f.parts[-4:-1]
        person.append(people.setdefault(ident, len(people)))
        clip.append(clips.setdefault((ident, video, c), len(clips)))
    return ImageListSource(name, files, {"person": torch.tensor(person), "clip": torch.tensor(clip)}, image_size)


def lfw(root, image_size: int = 64, name: str = "lfw") -> ImageListSource:
    """LFW's pictures with ``person`` numbered by name in sorted order (whole pictures: LFW gives no box)."""
    root = Path(root)
    files = sorted(p for p in _need(root / "lfw", "LFW images").glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    names = {n: i for i, n in enumerate(sorted({f.parent.name for f in files}))}
    return ImageListSource(name, files, {"person": torch.tensor([names[f.parent.name] for f in files])}, image_size)


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


LOADERS = {"celeba": celeba, "affectnet": affectnet, "vggface2": vggface2, "voxceleb": voxceleb, "lfw": lfw}
