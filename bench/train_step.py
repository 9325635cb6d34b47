"""Training-step throughput: images/s of one step of each stage (aae, disentangle, joint) at 64 and 128 px,
for the demo width (0.25) and the paper width (1.0), and the achieved GFLOP/s against a measured fp32 GEMM
peak of this machine. FLOPs are counted by torch.utils.flop_counter over one real step.

    python bench/train_step.py [--batch 16] [--repeats 2] [--sizes 64,128] [--widths 0.25,1.0] [--cycle-samples N]
                               [--precision fp32|bf16] [--channels-last]

The demo preset's settings are used, including its cycle budget (rows per attribute through G and E in the
cycle of disentangle and joint steps); ``--cycle-samples 0`` sends the whole batch for every attribute.
"""

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import fsx
from fsx.plugins import get_registry
from fsx.train import make_config
from fsx.train.stages import STAGE_TABLE, build_optimizers, enter_stage
from fsx.train.steps import Steps


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fake_batch(n: int, size: int):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    labels = {
        "pose": (torch.rand(n, 3, generator=g) - 0.5) * 60,
        "person": torch.arange(n) // 4,
        "clip": torch.arange(n) // 2,
        "valence": torch.rand(n, generator=g) * 2 - 1,
        "arousal": torch.rand(n, generator=g) * 2 - 1,
        "category": torch.randint(8, (n,), generator=g),
    }
    return x, labels


def bench(size: int, width: float, batch: int, repeats: int, cycle_samples: int | None = None,
          precision: str = "fp32", channels_last: bool = False):
    reg = get_registry()
    attrs_ = reg.resolve("pose,id,expr,style")
    cfg = make_config("demo", model=dict(image_size=size, width=width), batch_size=batch,
                      loss=dict(cycle_samples=cycle_samples))
    model = fsx.FaceModel(fsx.ModelConfig.for_attributes(attrs_, cfg.model))
    opt = build_optimizers(model, cfg)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else None
    steps = Steps(model, attrs_, cfg, opt, torch.Generator().manual_seed(0), sync=lambda mods: None, autocast=autocast)
    x, y = fake_batch(batch, size)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    out = {}
    for stage in ("aae", "disentangle", "joint"):
        enter_stage(model, STAGE_TABLE[stage])
        fn = getattr(steps, stage)
        fn(x, y, 0)  # warm-up
        with FlopCounterMode(display=False) as counter:
            fn(x, y, 0)
        flops = counter.get_total_flops()
        best = min(_timed(lambda: fn(x, y, 0)) for _ in range(repeats))
        out[stage] = (batch / best, flops / best / 1e9)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--widths", default="0.25,1.0")
    ap.add_argument("--cycle-samples", type=int, default=None, help="rows per attribute in the cycle (demo's by default)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: CPU autocast")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    peak = gemm_peak()
    cycle = make_config("demo", loss=dict(cycle_samples=args.cycle_samples)).loss.cycle_samples
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 GEMM peak (2048^3): {peak:.0f} GFLOP/s; "
          f"batch {args.batch}, cycle rows per attribute: {cycle or 'the whole batch'}; {args.precision}"
          f"{', channels_last' if args.channels_last else ''}")
    print(f"{'size':>4} {'width':>5} {'stage':<12} {'img/s':>8} {'GFLOP/s':>8} {'% peak':>7}")
    for size in map(int, args.sizes.split(",")):
        for width in map(float, args.widths.split(",")):
            for stage, (ips, gflops) in bench(size, width, args.batch, args.repeats, args.cycle_samples, args.precision,
                                                 args.channels_last).items():
                print(f"{size:>4} {width:>5} {stage:<12} {ips:8.1f} {gflops:8.1f} {100 * gflops / peak:6.1f}%", flush=True)


if __name__ == "__main__":
    main()
