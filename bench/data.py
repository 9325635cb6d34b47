"""How fast the data path delivers training batches, next to how fast a training step consumes them.

    python bench/data.py [--sizes 64,128] [--workers 0,1,2] [--batch 40] [--steps 60] [--faces 4000]

For each size: images/s that ``BatchSchedule`` (the trainer's data path: samplers, reading, mirroring; DataLoader
workers when > 0) delivers from prepared data (``fsx prepare``'s format, written here from SynthFaces renders: the
reading cost does not depend on what the crops show), from SynthFaces (rendered once into its cache, as the
trainer does), from a SynthFaces stream (``synth.persons=0``: every step's persons rendered for it) and from a folder of PNG files with labels.csv (decoded batch by batch), then the demo preset's aae
and joint steps in images/s at that size. The data path bounds a run
where its images/s are below the step's.
"""

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_step import bench as step_bench  # noqa: E402

from fsx.data.export import export_folder  # noqa: E402
from fsx.data.folder import FolderSource  # noqa: E402
from fsx.data.faces.prepared import PreparedSource  # noqa: E402
from fsx.data.faces.prepare import FORMAT, VERSION  # noqa: E402
from fsx.data.sources import parse_sources  # noqa: E402
from fsx.data.synthfaces import SynthFaces  # noqa: E402
from fsx.plugins import get_registry  # noqa: E402
from fsx.train.batches import BatchSchedule  # noqa: E402


def write_prepared(out: Path, size: int, n: int) -> Path:
    """A prepared folder of ``n`` SynthFaces crops in the documented layout (fsx.data.faces.prepared)."""
    data = SynthFaces("train", image_size=size, persons=-(-n // 64), cache=False)
    out.mkdir(parents=True)
    with open(out / "images.u8", "wb") as fh:
        for start in range(0, n, 512):
            x, _ = data.get_batch(list(range(start, min(start + 512, n))))
            fh.write((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy().tobytes())
    np.zeros((n, 68, 2), "<f4").tofile(out / "landmarks.f32")
    _, labels = data.get_batch(list(range(min(n, 64))))  # label values do not change reading cost
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "person", "clip", "yaw", "pitch", "roll", "face_score", "faces"])
        for i in range(n):
            w.writerow([f"{i}.png", i // 64, i // 16, 1.0, 2.0, 3.0, 1.0, 1])
    manifest = {"format": FORMAT, "version": VERSION, "count": n, "size": size, "source": "bench",
                "equalize": "off", "images": {"file": "images.u8"}, "landmarks": {"file": "landmarks.f32"}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def delivered(sources, batch: int, steps: int, workers: int) -> float:
    """Images per second out of the trainer's batch schedule over ``steps`` steps (after 3 warm-up steps)."""
    attributes = get_registry().resolve("pose,id,expr,style")
    schedule = BatchSchedule(sources, attributes, batch, seed=0, rank=0, mirror_p=0.5,
                             generator=torch.Generator().manual_seed(0), workers=workers)
    for step in range(3):
        schedule.next(step)
    start = time.perf_counter()
    images = sum(len(schedule.next(step)[1]) for step in range(3, 3 + steps))
    seconds = time.perf_counter() - start
    schedule.close()
    return images / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--faces", type=int, default=4000, help="crops in the prepared folder")
    ap.add_argument("--files", type=int, default=1000, help="PNG files in the folder source")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}; images/s delivered "
          f"by the data path (columns: DataLoader workers) and consumed by the demo preset's steps (width 0.25)")
    print(f"{'size':>4} {'source':<12} " + " ".join(f"{f'{w} workers':>10}" for w in workers))
    with tempfile.TemporaryDirectory() as tmp:
        for size in map(int, args.sizes.split(",")):
            prepared = PreparedSource(write_prepared(Path(tmp) / f"p{size}", size, args.faces), image_size=size,
                                      name="prepared")
            synth = parse_sources("synthfaces", size, persons=100)
            synth[0].parent.warm_cache()
            export_folder(Path(tmp) / f"f{size}", args.files, size=size)
            folder = FolderSource(Path(tmp) / f"f{size}", image_size=size, name="folder")
            stream = parse_sources("synthfaces", size, persons=0)  # new persons rendered for every step
            for name, sources in (("prepared", [prepared]), ("synthfaces", synth), ("stream", stream),
                                  ("folder (PNG)", [folder])):
                rates = [delivered(sources, args.batch, args.steps, w) for w in workers]
                print(f"{size:>4} {name:<12} " + " ".join(f"{r:10.0f}" for r in rates), flush=True)
            steps = step_bench("demo", size, 0.25, args.batch, repeats=1, stages=("aae", "joint"),
                               channels_last=True)
            print(f"{size:>4} {'train step':<12} " + ", ".join(f"{s} {v[0]:.0f}" for s, v in steps.items()), flush=True)


if __name__ == "__main__":
    main()
