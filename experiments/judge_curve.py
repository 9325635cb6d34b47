"""The judge's readings of decoded faces against training minutes, from runs' own metrics.jsonl.

    python experiments/judge_curve.py RUN [RUN ...] --labels "old demo,new demo" --out docs/judge-curve.png

Each RUN is a run folder trained with ``--judge-every`` (on by default for SynthFaces); the plot has one panel per
reading (expression accuracy, pose MAE, identity verification), a line per run and per decode (G(E(x)) solid,
G(Phi^-1(Phi(E(x)))) dashed), and the judge's reading of the real pictures as a grey line. Needs matplotlib
(``pip install 'fsx[plots]'``).
"""

import argparse
import json
from pathlib import Path

PANELS = (("expression", "expression accuracy (chance 0.125)"), ("pose_mae", "pose MAE (degrees)"),
          ("identity", "identity verification"))


def judge_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "judge/ae/expression" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--labels", help="comma-separated, one per run (default: the folder names)")
    ap.add_argument("--offsets", help="comma-separated minutes added to each run's (a run continued from another "
                                      "run's checkpoint starts at that run's minutes)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = args.labels.split(",") if args.labels else [r.name for r in args.runs]
    offsets = [float(m) for m in args.offsets.split(",")] if args.offsets else [0.0] * len(args.runs)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for run, label, offset, color in zip(args.runs, labels, offsets, ("tab:red", "tab:blue", "tab:green", "tab:purple")):
        rows = judge_rows(run)
        if not rows:
            raise SystemExit(f"{run}: metrics.jsonl has no judge readings (train with --judge-every N)")
        minutes = [offset + r["minutes"] for r in rows]
        for ax, (key, title) in zip(axes, PANELS):
            ax.plot(minutes, [r[f"judge/ae/{key}"] for r in rows], color=color, label=f"{label}: G(E(x))")
            ax.plot(minutes, [r[f"judge/emb/{key}"] for r in rows], color=color, ls="--",
                    label=f"{label}: G(Phi^-1(Phi(E(x))))")
            ax.plot(minutes, [r[f"judge/x/{key}"] for r in rows], color="grey", lw=0.8)
            ax.set_title(title)
            ax.set_xlabel("training minutes")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
