"""SynthFaces as a labelled folder: PNG files and a ``labels.csv`` in the layout ``fsx.data.folder`` reads, so
a user sees the format with real values and can start from it (``fsx synth --export DIR``)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from torchvision.utils import save_image

from fsx.checkpoint import atomic_write_bytes
from fsx.data.face_params import POSE_FIELDS
from fsx.data.synthfaces import LABEL_FIELDS, SynthFaces

CHUNK = 256


def export_folder(out: str | Path, n: int, size: int = 64, split: str = "train", seed: int = 0,
                  clips_per_person: int = 4, frames_per_clip: int = 16, progress=None) -> Path:
    """Write the first ``n`` faces of a SynthFaces split (as few persons as hold them) to ``out``; returns the
    path of ``labels.csv``. Pose is written as yaw, pitch, roll in degrees, group ids as integers."""
    out = Path(out)
    table = out / "labels.csv"
    if table.exists():
        raise FileExistsError(f"{table} exists; export into a new folder")
    persons = max(1, math.ceil(n / (clips_per_person * frames_per_clip)))
    data = SynthFaces(split, image_size=size, persons=persons, clips_per_person=clips_per_person,
                      frames_per_clip=frames_per_clip, seed=seed, cache=False)
    (out / "img").mkdir(parents=True, exist_ok=True)
    fields = [f for f in LABEL_FIELDS if f != "pose"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", *POSE_FIELDS, *fields])
    for start in range(0, n, CHUNK):
        idx = list(range(start, min(start + CHUNK, n)))
        images, labels = data.get_batch(idx)
        for k, i in enumerate(idx):
            name = f"img/{i:06d}.png"
            try:
                save_image(images[k], out / name)
            except OSError as exc:  # a full disk: name the picture that could not be written
                raise OSError(exc.errno, f"could not write {out / name}: {exc.strerror or exc}") from None
            values = [round(float(v), 4) for v in labels["pose"][k]]
            values += [round(float(labels[f][k]), 5) if labels[f].is_floating_point() else int(labels[f][k])
                       for f in fields]
            writer.writerow([name, *values])
        if progress is not None:
            progress(len(idx))
    atomic_write_bytes(table, buf.getvalue().encode())  # last: a folder with labels.csv is a complete export
    return table
