"""SynthFaces rendering speed: images per second at 64 and 128 px (fresh renders, no cache).

    python bench/synthfaces.py [--batch 512] [--repeats 3] [--threads N] [--backend compiled|torch|both]

"compiled" is what ``render`` uses when numba is installed (core/data/render/compositing.py); "torch" is the reference
path of eager torch ops.
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
    ap.add_argument("--backend", choices=("compiled", "torch", "both"), default="both")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    n = args.batch
    params = {"pose": sample_pose(n, g), "identity": sample_identity(n, g),
              "expression": sample_expression(n, g), "style": sample_style(n, g)}
    print(f"torch {torch.__version__}, {args.threads} threads, batch {n}")
    backends = ("compiled", "torch") if args.backend == "both" else (args.backend,)
    for backend in backends:
        for size in (64, 128):
            render({k: v[:64] for k, v in params.items()}, size, backend=backend)  # warm-up (and numba's compile)
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                render(params, size, backend=backend)
                best = min(best, time.perf_counter() - t0)
            print(f"{backend:>8} {size:>4} px: {n / best:8.0f} images/s  (best of {args.repeats}, "
                  f"{best * 1000:.0f} ms per {n})")


if __name__ == "__main__":
    main()
