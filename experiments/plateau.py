"""The joint step at which a run's expression loss leaves its plateau, read from the run's own metrics.jsonl.

    python experiments/plateau.py RUN [RUN ...] [--under 35.0] [--key task_expression.contrastive]

While E holds no expression, Phi maps every face's f_expression to one direction and the contrastive loss sits at
its uniform value (35.5 at the demo's weight 10). The plateau ends at the first logged joint step whose value is
under ``--under`` (35.0: 0.986 x uniform, the rule docs/experiments.md uses). A run whose expression loss has parts
(``--option expression.prototype_weight=W``) logs the contrastive part as ``task_expression.contrastive``; that
part is read where it exists, since the sum also holds the prototype term, which falls from the first step.
"""

import argparse
import json
from pathlib import Path


def plateau_end(run: Path, under: float, keys: list[str]) -> tuple[int | None, str, list[tuple[int, float]]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("stage") == "joint"]
    key = next((k for k in keys if any(f"loss/{k}" in r for r in rows)), None)
    if key is None:
        raise SystemExit(f"{run}: no joint-stage row logs any of {', '.join(keys)}")
    curve = [(r["step"], r[f"loss/{key}"]) for r in rows if f"loss/{key}" in r]
    end = next((step for step, value in curve if value < under), None)
    return end, key, curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--under", type=float, default=35.0)
    ap.add_argument("--key", action="append", help="metric to read (without loss/); default: the contrastive part, "
                                                   "else task_expression")
    args = ap.parse_args()
    keys = args.key or ["task_expression.contrastive", "task_expression"]
    for run in args.runs:
        end, key, curve = plateau_end(run, args.under, keys)
        head = " ".join(f"{s}:{v:.1f}" for s, v in curve[:16])
        print(f"{run}: {key} first under {args.under} at joint step {end if end is not None else 'never'} ({head})")


if __name__ == "__main__":
    main()
