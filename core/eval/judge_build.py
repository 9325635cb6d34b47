"""Rebuild the SynthFaces judge (``judge.safetensors``): ``python -m fsx.eval.judge_build``.

Trained on the SynthFaces train persons, every picture blurred by a random amount half the time (decoders
blur; the judge must read content, not sharpness); bit for bit the same on the same machine and torch version,
about 10 minutes on one core; the number of steps and the seed are in the file's metadata."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsx.data.synthfaces import SynthFaces
from fsx.eval.judge import CLASSES, ID_DIM, POSE_SCALE, SIZE, STYLE, WEIGHTS, Judge


SIGMAS = (0.5, 1.0, 1.5, 2.0, 2.5)  # px at 64 px


def _blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Half the batch blurred, each picture by a Gaussian of one of ``SIGMAS`` (decoders blur; the judge must
    read content, not sharpness)."""
    from torchvision.transforms.functional import gaussian_blur

    out = x.clone()
    level = torch.randint(2 * len(SIGMAS), (len(x),), generator=g)  # >= len(SIGMAS): left sharp
    for k, sigma in enumerate(SIGMAS):
        rows = torch.nonzero(level == k).flatten()
        if len(rows):
            out[rows] = gaussian_blur(x[rows], kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
    return out


def _losses(out: dict, y: dict, person_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "pose": (out["pose"] - y["pose"]).abs().mean() / POSE_SCALE,
        "category": F.cross_entropy(out["category"], y["category"]),
        "va": (out["va"] - y["va"]).abs().mean(),
        "identity": F.cross_entropy(person_logits, y["person"]),
        "style": (out["style"] - y["style"]).abs().mean(),
        "classes": F.binary_cross_entropy_with_logits(out["classes"], y["classes"]),
    }


def _targets(labels: dict, person_index: dict[int, int]) -> dict[str, torch.Tensor]:
    return {"pose": labels["pose"].float(), "category": labels["category"].long(),
            "va": torch.stack([labels["valence"], labels["arousal"]], 1).float(),
            "person": torch.tensor([person_index[int(p)] for p in labels["person"]]),
            "style": torch.stack([labels[k].float() for k in STYLE], 1),
            "classes": torch.stack([labels[k].float() for k in CLASSES], 1)}


def build(out: str | Path = WEIGHTS, steps: int = 3000, batch: int = 128, seed: int = 0, width: int = 32,
          log=print) -> dict:
    """Train the judge on the SynthFaces train split (64 px) and write it to ``out``; returns its metadata.
    Deterministic in a fresh process (``python -m fsx.eval.judge_build``): one thread, a seeded generator for everything
    random (a second build in the same process can differ in the last bits: state kept from the first run)."""
    from safetensors.torch import save_file


    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order, run after run
    try:
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        data = SynthFaces("train", image_size=SIZE, seed=0)
        data.warm_cache()
        persons = sorted(int(p) for p in data.labels["person"].unique())
        person_index = {p: i for i, p in enumerate(persons)}
        judge = Judge(width)
        person_head = nn.Linear(ID_DIM, len(persons), bias=False)  # a cosine classifier, dropped after training
        params = list(judge.parameters()) + list(person_head.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
        t0 = time.perf_counter()
        for step in range(steps):
            idx = torch.randint(len(data), (batch,), generator=g)
            x, labels = data.get_batch(idx.tolist())
            x = _blur(x, g)
            flip = torch.rand(batch, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = _targets(labels, person_index)
            y["pose"] = torch.where(flip[:, None], y["pose"] * torch.tensor([-1.0, 1.0, -1.0]), y["pose"])
            y["style"][:, STYLE.index("light_x")] = torch.where(flip, -y["style"][:, STYLE.index("light_x")],
                                                                  y["style"][:, STYLE.index("light_x")])
            pred = judge(x)
            person_logits = 16.0 * pred["identity"] @ F.normalize(person_head.weight, dim=1).T
            terms = _losses(pred, y, person_logits)
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 250 == 0 or step == steps - 1:
                log(f"judge step {step}/{steps}: " + " ".join(f"{k}={v.item():.3f}" for k, v in terms.items()) +
                    f" ({time.perf_counter() - t0:.0f} s)")
        meta = {"steps": steps, "batch": batch, "seed": seed, "width": width, "torch": torch.__version__,
                "data": "SynthFaces train split, 400 persons x 4 clips x 16 frames, 64 px"}  # no times: same bytes
        # half precision on disk (a 1.9 MB file); read back as float32
        state = {k: (v.half() if v.is_floating_point() else v).detach().contiguous() for k, v in judge.state_dict().items()}
        save_file(state, str(out), metadata={"judge": json.dumps(meta, sort_keys=True)})
        return {**meta, "train_seconds": round(time.perf_counter() - t0, 1)}
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description="Rebuild the SynthFaces judge (judge.safetensors).")
    ap.add_argument("--out", default=str(WEIGHTS))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(build(args.out, steps=args.steps, batch=args.batch, seed=args.seed)))


if __name__ == "__main__":
    main()
