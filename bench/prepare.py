"""fsx prepare's speed: pictures per second through detection, landmarks, alignment, equalisation and PnP.

    python bench/prepare.py [--pictures 200] [--side 512] [--workers 1,2] [--detector hog]

The pictures are scikit-image's astronaut (a real photo, one face), turned by a few degrees each so that no two
are the same, saved as JPEG at ``--side`` px: the cost per picture is that of a real photo of that size.
"""

import argparse
import csv
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

from fsx.data.faces.prepare import prepare_source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pictures", type=int, default=200)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--detector", default="hog", choices=("hog", "cnn"))
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        (root / "img").mkdir(parents=True)
        img = cv2.resize(data.astronaut(), (args.side, args.side))
        with open(root / "labels.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "person"])
            for i in range(args.pictures):
                angle = (i % 21) - 10
                m = cv2.getRotationMatrix2D((args.side / 2, args.side / 2), angle, 1.0)
                turned = cv2.warpAffine(img, m, (args.side, args.side), borderMode=cv2.BORDER_REFLECT)
                Image.fromarray(np.ascontiguousarray(turned)).save(root / "img" / f"{i:05d}.jpg", quality=90)
                w.writerow([f"img/{i:05d}.jpg", 0])
        print(f"{args.pictures} JPEG photos of {args.side} px, {args.detector} detector, crops of {args.size} px")
        for workers in map(int, args.workers.split(",")):
            start = time.perf_counter()
            report = prepare_source("photos", root, Path(tmp) / f"out{workers}", size=args.size,
                                    detector=args.detector, workers=workers)
            total = time.perf_counter() - start
            print(f"workers {workers}: {args.pictures / total:6.1f} pictures/s overall ({report['pictures_per_second']}"
                  f" in the analysis), {report['faces']} faces kept", flush=True)


if __name__ == "__main__":
    main()
