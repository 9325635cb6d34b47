"""Training-step throughput: images/s of one step of each stage (aae, disentangle, joint) for a preset's networks,
schedule and losses, at the asked sizes and widths, and the achieved GFLOP/s against this machine's measured
GEMM peak. FLOPs are counted by torch.utils.flop_counter over the same real steps that are timed.

    python bench/train_step.py [--preset demo|paper|mad] [--batch 16] [--repeats 2] [--sizes 64,128]
                               [--widths 0.25,1.0] [--cycle-samples N] [--precision fp32|bf16|auto] [--nchw]
                               [--stages aae,disentangle,joint,decoder] [--profile] [--compile] [--device cpu|cuda]
                               [--set KEY=VALUE ...] [--vs KEY=VALUE ...]

A preset that updates D_x or D_z only every n-th step (``mad``: D_x every 4th, D_z every 2nd) is timed over a
whole schedule (4 consecutive steps), so images/s is what a run sees on average. ``--profile`` prints, per stage,
where the time goes: the forward time of each network and the ops with the most self time (torch.profiler).
On CUDA each stage also reports its peak memory; GFLOP/img is the work of one image's step (FLOPs / images).
``--compile`` wraps E, G and D_x in ``torch.compile`` and prints each stage's compile time (its first schedule),
to see whether compiling pays back within a run on this device (on 2 CPU cores it does not: docs/experiments.md).
``--set`` changes the preset as ``fsx train --set`` does; each ``--vs KEY=VALUE`` adds a row per stage with that one
setting changed and its time per image against the first row's (``x base``), measured in the same process, so a
lever's cost is a ratio taken side by side (``--vs loss.rec_ssim=0.1``, or another generator through
``--vs 'model.backbone_options={"generator": {...}}'``).
"""

import argparse
import math
import time
from contextlib import ExitStack

import torch
from torch.utils.flop_counter import FlopCounterMode

from fsx.train import make_config
from fsx.train.options import OptionError, parse_settings
from fsx.train.setup import build_run, resolve_precision
from fsx.train.stages import STAGE_TABLE, STAGES as ALL_STAGES, enter_stage

STAGES = tuple(s for s in ALL_STAGES if s != "refit")  # refit's step is disentangle's


def gemm_peak(dtype=torch.float32, sizes=(1024, 2048, 4096), repeats: int = 3, device: str = "cpu") -> float:
    """The best GFLOP/s of square matrix products over a few sizes, with all of torch's threads."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        a @ b
        t = min(_timed(lambda: a @ b) for _ in range(repeats))
        best = max(best, 2 * n**3 / t / 1e9)
    return best


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
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


def network_ranges(model):
    """Forward hooks that label each network's forward pass in a profile (E, G, D_x, D_z, phi, phi_inv)."""
    nets = {"E": model.aae.E, "G": model.aae.G, "D_x": model.aae.D_x, "D_z": model.aae.D_z,
            "phi": model.disentangler.phi, "phi_inv": model.disentangler.phi_inv}
    handles, open_ranges = [], {}
    for name, net in nets.items():
        def pre(mod, inp, name=name):
            r = torch.profiler.record_function(f"forward {name}")
            open_ranges.setdefault(name, []).append(r)
            r.__enter__()

        def post(mod, inp, out, name=name):
            open_ranges[name].pop().__exit__(None, None, None)

        handles += [net.register_forward_pre_hook(pre), net.register_forward_hook(post)]
    return handles


def bench(preset: str, size: int, width: float, batch: int, repeats: int, cycle_samples=None,
          precision: str = "fp32", channels_last: bool = False, stages=STAGES, profile: bool = False,
          device: str = "cpu", compile_: bool = False, feature_match: float | None = None,
          settings: dict | None = None):
    """stage -> (images/s, GFLOP/s, peak memory in GiB or None on CPU). ``settings``: sections of the training
    configuration (``parse_settings``'s output) laid over the preset before the sizes asked for here."""
    settings = settings or {}
    # The run as the trainer builds it (fsx.train.setup.build_run): model, optimisers, step functions; a small fixed
    # SynthFaces set stands in for the data, since the steps are timed on one fixed batch.
    cfg = make_config(preset, **{**settings, "batch_size": batch, "precision": precision, "device": device,
                                 "model": {**settings.get("model", {}), "image_size": size, "width": width},
                                 "synth": {**settings.get("synth", {}), "persons": 4, "clips": 2, "frames": 2},
                                 "loss": {**settings.get("loss", {}), "cycle_samples": cycle_samples,
                                          "feature_match": feature_match}})
    run_ = build_run(cfg)
    model, steps = run_.model, run_.steps
    eager = {name: getattr(model.aae, name) for name in ("E", "G", "D_x")}
    compiled = {name: torch.compile(net) for name, net in eager.items()} if compile_ else eager  # same parameters
    use = lambda nets: [setattr(model.aae, name, net) for name, net in nets.items()]  # noqa: E731
    kind = torch.device(device).type
    x, y = fake_batch(batch, size)
    x, y = x.to(device), {k: v.to(device) for k, v in y.items()}
    if channels_last:  # the trainer's layout; --nchw measures torch's default instead
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        model.to(memory_format=torch.contiguous_format)
    schedule = math.lcm(cfg.optim.d_x_every, cfg.optim.d_z_every)  # steps until the D updates repeat
    out = {}
    for stage in stages:
        enter_stage(model, STAGE_TABLE[stage])
        fn = steps.of(stage)
        run = lambda: [fn(x, y, i) for i in range(schedule)]  # noqa: E731
        use(eager)  # FLOPs are counted on the eager networks: the counter does not see into compiled graphs
        run()  # warm-up
        with FlopCounterMode(display=False) as counter:
            run()
        flops = counter.get_total_flops()
        if compile_:
            use(compiled)
            print(f"  {stage}: first schedule (compiling) {_timed(run):.0f} s", flush=True)
        if kind == "cuda":
            torch.cuda.reset_peak_memory_stats()
        best = min(_timed(run) for _ in range(repeats))
        memory = torch.cuda.max_memory_allocated() / 2**30 if kind == "cuda" else None
        out[stage] = (schedule * batch / best, flops / best / 1e9, memory)
        if profile:
            print_profile(model, run, f"{stage} ({size} px, width {width}, {schedule} step(s))")
    return out


def print_profile(model, run, title: str, rows: int = 12) -> None:
    from torch.profiler import ProfilerActivity, profile

    with ExitStack() as stack:
        handles = network_ranges(model)
        stack.callback(lambda: [h.remove() for h in handles])
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_initialized() else [])
        with profile(activities=activities) as prof:
            run()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\n--- profile: {title}; total self CPU time {total / 1e3:.0f} ms")
    nets = sorted((e for e in events if e.key.startswith("forward ")), key=lambda e: -e.cpu_time_total)
    print("  forward time by network: " + ", ".join(f"{e.key[8:]} {e.cpu_time_total / 1e3:.0f} ms" for e in nets))
    ops = sorted((e for e in events if not e.key.startswith("forward ")), key=lambda e: -e.self_cpu_time_total)
    for e in ops[:rows]:
        print(f"  {e.key:<48} {e.self_cpu_time_total / 1e3:8.1f} ms  {100 * e.self_cpu_time_total / total:5.1f}%"
              f"  x{e.count}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo", help="networks, D schedule and loss settings of this preset")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--widths", default="0.25,1.0")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--cycle-samples", type=int, default=None, help="rows per attribute in the cycle (the preset's by default)")
    ap.add_argument("--feature-match", type=float, default=None, help="loss.feature_match (the preset's by default)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=None,
                    help="the preset's by default, as fsx train; auto: bf16 where the device computes it natively")
    ap.add_argument("--nchw", action="store_true", help="keep torch's default layout (fsx trains in channels_last)")
    ap.add_argument("--profile", action="store_true", help="print where each stage's time goes")
    ap.add_argument("--compile", action="store_true", help="torch.compile E, G and D_x; report the compile time")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a training option, as fsx train --set takes it (repeatable)")
    ap.add_argument("--vs", action="append", default=[], metavar="KEY=VALUE",
                    help="also time the steps with this one option changed (repeatable: a row each)")
    args = ap.parse_args()
    try:
        base = parse_settings(args.settings)
        # a later KEY=VALUE wins over an earlier one, so each variant is the base's settings plus its own
        variants = [("base", base)] + [(item, parse_settings(args.settings + [item])) for item in args.vs]
    except OptionError as e:
        ap.error(str(e))
    cfg = make_config(args.preset, **{**base, "precision": args.precision,
                                      "loss": {**base.get("loss", {}), "cycle_samples": args.cycle_samples}})
    precision = resolve_precision(cfg.precision, torch.device(args.device))  # what the steps below compute in
    peak = gemm_peak(torch.bfloat16 if precision == "bf16" else torch.float32, device=args.device)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; {precision} GEMM peak (best of "
          f"1024-4096^3): {peak:.0f} GFLOP/s; preset {args.preset}, batch {args.batch}, D_x every "
          f"{cfg.optim.d_x_every}, D_z every {cfg.optim.d_z_every}, cycle rows per attribute: "
          f"{cfg.loss.cycle_samples or 'the whole batch'}{', NCHW' if args.nchw else ', channels_last'}")
    print(f"{'size':>4} {'width':>5} {'stage':<12} {'img/s':>8} {'GFLOP/s':>8} {'% peak':>7} {'GFLOP/img':>9}"
          f"{' GiB':>6}{'  x base' if args.vs else ''}{'  setting' if args.vs else ''}")
    for size in map(int, args.sizes.split(",")):
        for width in map(float, args.widths.split(",")):
            first = {}
            for label, settings in variants:
                result = bench(args.preset, size, width, args.batch, args.repeats, args.cycle_samples,
                               precision, not args.nchw, tuple(args.stages.split(",")), args.profile,
                               args.device, args.compile, args.feature_match, settings)
                for stage, (ips, gflops, gib) in result.items():
                    first.setdefault(stage, ips)
                    vs = f"{first[stage] / ips:8.2f}  {label}" if args.vs else ""  # time per image, base = 1
                    print(f"{size:>4} {width:>5} {stage:<12} {ips:8.1f} {gflops:8.1f} {100 * gflops / peak:6.1f}% "
                          f"{gflops / ips:9.2f}{f'{gib:6.1f}' if gib is not None else '     -'}{vs}", flush=True)


if __name__ == "__main__":
    main()
