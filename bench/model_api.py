"""How fast a loaded model answers users' calls: pictures/s of ``encode``, ``autoencode``, ``reconstruct``,
``transfer`` and ``generate`` as ``fsx.load`` returns the model (channels_last) and with the same model in NCHW.

    python bench/model_api.py MODEL.safetensors [--images 400] [--batch 100]

A model without a file to read: ``python bench/model_api.py --preset demo`` times the preset's networks with their
initial weights (the same arithmetic). Prints one JSON line: each call's pictures/s in both layouts, their ratio,
and the largest difference between the two layouts' pictures (float rounding).
"""

import argparse
import copy
import json
import time

import torch

import fsx
from fsx.train import make_config
from fsx.train.setup import configured_attributes, initial_model

CALLS = ("encode", "autoencode", "reconstruct", "transfer", "generate")


def call(model, name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "encode":
        return model.encode(x)["z"]
    if name == "transfer":
        return model.transfer(x[:1], x, list(model.attributes)[-1:])
    if name == "generate":
        return model.generate(len(x), generator=torch.Generator().manual_seed(0))
    return getattr(model, name)(x)


@torch.no_grad()
def rate(model, name: str, x: torch.Tensor, batch: int) -> tuple[float, torch.Tensor]:
    call(model, name, x[:batch])  # warm-up
    t0 = time.perf_counter()
    out = torch.cat([call(model, name, x[s : s + batch]) for s in range(0, len(x), batch)])
    return len(x) / (time.perf_counter() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="a model file; without one, --preset's networks at their initial weights")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    if args.model:
        model = fsx.load(args.model)
    else:
        cfg = make_config(args.preset, attributes=("pose", "identity", "expression", "style"))
        torch.manual_seed(0)
        model = initial_model(cfg, configured_attributes(cfg)).eval()
    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    size = model.image_size
    x = torch.rand(args.images, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = {"model": args.model or f"{args.preset} preset, initial weights", "images": args.images,
           "size": size, "threads": torch.get_num_threads()}
    for name in CALLS:
        fast, a = rate(model, name, x, args.batch)
        slow, b = rate(nchw, name, x, args.batch)
        out[name] = {"channels_last": round(fast, 1), "nchw": round(slow, 1), "ratio": round(fast / slow, 2),
                     "max_abs_difference": float((a - b).abs().max())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
