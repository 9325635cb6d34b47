"""The decoded-face targets of issue "Faces that draw", read from ``fsx eval``'s metrics.json of one or more runs.

    python experiments/targets.py RUN/eval/metrics.json [...]

Per run: the judge's readings of G(E(x)) and G(Phi^-1(Phi(E(x)))) against its reading of x (expression >= 50% of
x's, pose MAE <= 1.5 x x's, identity verification within 5 points of x's), the RMSE (<= 25 on 0-255), the
expression transfer (A's category for >= 40% of x's reading), the identity transfer (closer to A for >= 85% of
pairs), the other factors of each transfer still B's (>= 80% of the reconstruction's reading; for pose and style,
whose readings are errors, the edit's error to B <= 1.25 x the reconstruction's), and the sub-vector table (pose <=
3 deg, identity >= 92%, expression AUC >= 0.88, style >= 90%). The transfer checks are made for the paper's edit and,
where the metrics hold it, again for each residual edit (``transfer(..., residual="full")`` and ``"projected"``).
Each line: the value, the target, met or not.
"""

import json
import sys


def check(rows, name, value, target, ok, fmt="{:.3f}"):
    rows.append(f"  {'met ' if ok else 'MISS'} {name}: {fmt.format(value)} (target {target})")
    return ok


def edit_checks(rows, t: dict, x: dict, ae: dict, tag: str) -> None:
    """transfer(A, B, [k]): k reads as A's, every other factor still as B's."""
    if "expression" in t:
        e = t["expression"]["expression"]["as_a"]
        check(rows, f"transfer{tag} expression: A's category", e, f">= {0.4 * x['expression_accuracy']:.3f}",
              e >= 0.4 * x["expression_accuracy"])
    if "identity" in t:
        i = t["identity"]["identity"]["as_a"]
        check(rows, f"transfer{tag} identity: closer to A", i, ">= 0.85", i >= 0.85)
    for k, row in t.items():
        for other, score in row.items():
            name = f"transfer{tag} {k}: {other}"
            if other == k:
                continue
            if other == "expression":
                check(rows, f"{name} still B's", score["as_b"], f">= {0.8 * ae['expression_accuracy']:.3f}",
                      score["as_b"] >= 0.8 * ae["expression_accuracy"])
            elif other == "identity":  # the reconstruction is its own person's: closer to B for >= 80% of pairs
                check(rows, f"{name} still B's", score["as_b"], ">= 0.80", score["as_b"] >= 0.8)
            elif other in ("pose", "style"):  # errors: at most 1.25 x the reconstruction's
                mae = ae[f"{other}_mae"]
                check(rows, f"{name} error to B", score["as_b"], f"<= {1.25 * mae:.3f}", score["as_b"] <= 1.25 * mae)


def report(metrics: dict) -> list[str]:
    rows = []
    j = metrics["judge"]
    x = j["of"]["x"]
    for who in ("G(E(x))", "G(Phi^-1(Phi(E(x))))"):
        r = j["of"][who]
        check(rows, f"{who} expression", r["expression_accuracy"], f">= {0.5 * x['expression_accuracy']:.3f}",
              r["expression_accuracy"] >= 0.5 * x["expression_accuracy"])
        check(rows, f"{who} pose MAE", r["pose_mae"], f"<= {1.5 * x['pose_mae']:.2f}", r["pose_mae"] <= 1.5 * x["pose_mae"],
              "{:.2f}")
        check(rows, f"{who} identity", r["identity_verification"], f">= {x['identity_verification'] - 0.05:.3f}",
              r["identity_verification"] >= x["identity_verification"] - 0.05)
    rmse = metrics["rmse"]
    for key, value in rmse.items():
        if isinstance(value, (int, float)):
            check(rows, f"RMSE {key}", value, "<= 25", value <= 25, "{:.1f}")
    ae = j["of"]["G(E(x))"]
    edits = {"transfer": "", "transfer_residual": " (residual)", "transfer_projected": " (projected residual)"}
    for key, label in edits.items():  # the paper's edit, then each residual edit where it was judged
        if key in j["edits"]:
            edit_checks(rows, j["edits"][key], x, ae, label)
    table = metrics["table"]
    wants = {"pose": ("<=", 3.0), "identity": (">=", 0.92), "expression": (">=", 0.88), "style": (">=", 0.90)}
    for name, (op, target) in wants.items():
        if name in table:
            v = table[name]["results"][name]["value"]
            check(rows, f"sub-vector {name}", v, f"{op} {target}", v <= target if op == "<=" else v >= target)
    return rows


def main() -> None:
    for path in sys.argv[1:]:
        print(path)
        print("\n".join(report(json.loads(open(path).read()))))


if __name__ == "__main__":
    main()
