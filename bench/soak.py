"""Soak: kill -9 a training run at random moments, resume it each time, and check that it ends bit-identical to
an uninterrupted run (issue 34). Prints each kill's moment (seconds after start, and the stage and step of the
checkpoint it left) and the verdict; exits 1 when the weights differ.

    python bench/soak.py --cycles 20 --out /tmp/soak

The moments are drawn from a seeded generator, so a failing soak can be rerun as it was; they fall in the
start-up (imports, rendering), in steps, in checkpoint writes and at stage changes alike. ``--workers`` resumes
through DataLoader workers as well.
"""

import argparse
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from fsx.checkpoint import read_metadata


def train(args: list[str], out: Path, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fsx", "train", *args, "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def where(out: Path) -> str:
    ckpt = out / "checkpoint.safetensors"
    if not ckpt.exists():
        return "no checkpoint yet"
    meta = read_metadata(ckpt, expected_format=None)
    return f"checkpoint at {meta.get('stage') or 'a stage end'} step {meta.get('step')} (global {meta.get('global_step')})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=20, help="kills before the run may finish")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--steps", type=int, default=300, help="steps of each of the tiny preset's four stages (enough "
                                                          "that the run outlives the kills)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--judge-every", type=int, default=None, help="the trainer's --judge-every (its default if not given)")
    ap.add_argument("--latest", type=float, default=6.0, help="kill at most this many seconds after a start")
    args = ap.parse_args()
    run = ["--preset", "tiny", "--steps", str(args.steps), "--ckpt-every", "1", "--seed", "3", "--workers", str(args.workers)]
    run += ["--judge-every", str(args.judge_every)] if args.judge_every is not None else []
    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.perf_counter()
    if train(run, args.out / "reference", []).wait() != 0:
        raise SystemExit("the uninterrupted run failed")
    print(f"uninterrupted run: {time.perf_counter() - t0:.1f} s")
    rng, soaked, kills = random.Random(args.seed), args.out / "soaked", 0
    while True:
        resume = ["--resume"] if (soaked / "checkpoint.safetensors").exists() else ["--force"]
        proc = train(run, soaked, resume)
        if kills == args.cycles:
            code = proc.wait()
            break
        delay = rng.uniform(0.5, args.latest)
        try:
            proc.wait(timeout=delay)
            raise SystemExit(f"the run finished after {kills} of {args.cycles} kills: give more --steps")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            print(f"kill {kills:2d} at {delay:4.1f} s: {where(soaked)}", flush=True)
    if code != 0:
        raise SystemExit(f"the soaked run ended with exit code {code}")
    a, b = load_file(args.out / "reference" / "model.safetensors"), load_file(soaked / "model.safetensors")
    same = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    print(f"{kills} kills, then the run finished: {'bit-identical' if same else 'DIFFERENT'} to the uninterrupted "
          f"run ({len(a)} tensors); {time.perf_counter() - t0:.0f} s in all")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
