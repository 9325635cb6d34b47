"""SynthFaces rendering speed: images per second at 64 and 128 px (fresh renders, no cache).

    python bench/synthfaces.py [--batch 512] [--repeats 3] [--threads N]
"""

import argparse
import time

import torch

from fsx.data.face_params import sample_expression, sample_identity, sample_pose, sample_style
from fsx.data.render import render


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    n = args.batch
    params = {"pose": sample_pose(n, g), "identity": sample_identity(n, g),
              "expression": sample_expression(n, g), "style": sample_style(n, g)}
    print(f"torch {torch.__version__}, {args.threads} threads, batch {n}")
    for size in (64, 128):
        render({k: v[:64] for k, v in params.items()}, size)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            render(params, size)
            best = min(best, time.perf_counter() - t0)
        print(f"{size:>4} px: {n / best:8.0f} images/s  (best of {args.repeats}, {best * 1000:.0f} ms per {n})")


if __name__ == "__main__":
    main()
