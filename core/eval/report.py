"""report.md: the evaluation's metrics as tables and the figures' links."""

from __future__ import annotations


def _fmt(kind: str, v) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:.2f}" if kind == "regression" else (f"{100 * v:.1f}%" if kind == "verification" else f"{v:.3f}")


def _latent_lines(lat: dict | None) -> list[str]:
    if not lat:
        return []
    return [f"Codes E(x) against the prior N(0, I) that D_z pulls them towards (random samples are drawn from a "
            f"Gaussian fitted to E's codes of training pictures instead: `FaceModel.generate`): Frechet distance "
            f"{lat['frechet_to_prior']:.2f} (0 = same mean and covariance), RMS norm {lat['rms_norm']:.2f} vs "
            f"{lat['prior_rms_norm']:.2f}, mean |mean| {lat['mean_abs_mean']:.3f}, mean std {lat['mean_std']:.3f}.", ""]


def report(m: dict, names: list[str]) -> str:
    """report.md: the measures of ``m`` (``evaluate``'s metrics) in order, then the figures."""
    lines = _headline(m, names) + _table(m, names) + _edits(m) + _figures(m)
    return "\n".join(lines) + "\n"


def _phases(seconds: dict | None) -> str:
    return f" ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})" if seconds else ""


def _headline(m: dict, names: list[str]) -> list[str]:
    """What was measured and how, the reconstruction, FID and the latent, and the attribute table's header."""
    info = m.get("model", {})
    lines = [
        "# fsx evaluation report", "",
        f"Model trained on {info.get('data', '?')} with preset {info.get('preset', '?')} "
        f"(steps {info.get('steps', {})}); image size {m['image_size']} px. Evaluated on {m.get('data', 'synthfaces')}: "
        f"{m.get('split', '')}. Wall time {m.get('wall_time_s', '?')} s{_phases(m.get('seconds'))}.", "",
        *([f"{len(m['skipped'])} unreadable image(s) were left out, e.g. {m['skipped'][0]}", ""] if m.get("skipped") else []),
        "## Reconstruction (Table 1)", "",
        "| path | RMSE (0-255) |", "|---|---|",
        f"| autoencoder G(E(x)) | {m['rmse']['aae']:.2f} |",
        f"| embedding G(Phi^-1(Phi(E(x)))) | {m['rmse']['embedding']:.2f} |", "",
        (f"FID against {m['fid']['count']} real pictures of the evaluated persons (standard FID network; biased "
         f"upwards at small counts): random samples G(z*) {m['fid']['samples']:.1f} (z* from "
         f"{m.get('samples_from', 'N(0, I)')}), reconstructions G(E(x)) of "
         f"other pictures {m['fid']['reconstructions']:.1f}" if m['fid']['value'] is not None else f"FID: {m['fid']['reason']}"), "",
        *_latent_lines(m.get("latent")),
        "## Each attribute read from each sub-vector (Tables 2 and 3, generalised)", "",
        "Rows: the attribute probed; columns: the sub-vector it is read from; `not_k` is everything but the "
        "attribute's own sub-vector. Own sub-vector should win; the rest is leakage. Regression: MAE in the label's "
        "unit (lower is better; chance: predicting the mean); verification: 10-fold accuracy (chance 50%); "
        "classification: mean one-vs-rest AUC (chance 0.5).", "",
        "| attribute | metric | " + " | ".join(names) + " | not_k | chance |",
        "|---|---|" + "---|" * (len(names) + 2),
    ]
    return lines


def _table(m: dict, names: list[str]) -> list[str]:
    """Each attribute read from each sub-vector, and the per-component and per-class details of its own."""
    lines = []
    for attr, row in m["table"].items():
        res, kind = row["results"], row["kind"]
        metric = {"regression": "MAE", "verification": "accuracy", "classification": "AUC"}[kind]
        if kind == "regression" and row.get("unit"):
            metric = f"MAE ({row['unit']})"
        if kind == "verification" and "same_pairs" in res.get(attr, {}):
            own = res[attr]
            metric = f"accuracy ({own['pairs']} distinct pairs, {own['same_pairs']} same)"
        cells = [_fmt(kind, res.get(n, {}).get("value")) for n in names]
        chance = res.get(attr, {}).get("chance")
        lines.append(f"| {attr} | {metric} | " + " | ".join(cells) +
                     f" | {_fmt(kind, res.get(f'not_{attr}', {}).get('value'))} | {_fmt(kind, chance)} |")
    for attr, why in (m.get("not_measured") or {}).items():
        lines.append(f"| {attr} | not measured: {why} |" + " |" * (len(names) + 2))
    for attr, row in m["table"].items():
        own = row["results"].get(attr, {})
        if "per_component" in own:
            lines += ["", f"{attr} from its own sub-vector: " + ", ".join(
                f"{k} {v:.2f}" for k, v in own["per_component"].items()) + " (chance " + ", ".join(
                f"{k} {v:.2f}" for k, v in own["chance_per_component"].items()) + ")"]
        if "per_class" in own:
            lines += ["", f"{attr} AUC per class from its own sub-vector: " + ", ".join(
                f"{k} {v:.3f}" for k, v in own["per_class"].items())]
    return lines


def _edits(m: dict) -> list[str]:
    """Counterfactual edit errors, LFW, the identity reader, the judge and MIG/DCI: whichever were measured."""
    lines = []
    cf = m.get("counterfactual")
    lines += [] if cf is None else ["", "## Counterfactual edit error (SynthFaces ground truth)", "",
              f"RMSE (0-255) of the edited image against the exactly rendered counterfactual; the plain "
              f"reconstruction RMSE of the same targets is {cf['reconstruction']:.2f}.", "",
              "| attribute | transfer k | everything except k |", "|---|---|---|"]
    for n in (cf or {}).get("transfer", {}):
        lines.append(f"| {n} | {cf['transfer'][n]:.2f} | {cf['everything_except'][n]:.2f} |")
    if m.get("lfw"):
        lfw = m["lfw"]
        sizes = ", ".join(f"{k} ({v})" for k, v in lfw["sizes"].items())
        lines += ["", "## LFW verification (Table 2 protocol: pairs.txt, 10 folds)", "",
                  f"{lfw['pairs']} of {lfw['pairs_listed']} pairs ({len(lfw['skipped'])} unreadable images left "
                  f"out); images of {sizes} px" + ("." if any(k.startswith("prepared") for k in lfw["sizes"]) else
                                                   ", each centre-cropped to 0.6 of its side."), "",
                  "| sub-vector | accuracy |", "|---|---|"] + [f"| {k} | {100 * v:.1f}% |" for k, v in lfw["accuracy"].items()]
    ir = m.get("identity_reader")
    if ir and ir.get("pairs"):
        lines += ["", "## Identity of edits, read by an independent face descriptor", "",
                  f"{ir['pairs']} pairs (A, B) of different persons; {ir['reader']}. transfer k: B with A's k; "
                  "'all but k': A with B's k. Transferring identity should read as A, every other edit as B.", "",
                  "| image | closer to A | distance to A | distance to B |", "|---|---|---|---|"]
        lines += [f"| {e} | {100 * v['closer_to_a']:.1f}% | {v['distance_to_a']:.3f} | {v['distance_to_b']:.3f} |"
                  for e, v in ir["edits"].items()]
    elif ir:
        lines += ["", f"Identity of edits not read: {ir.get('reason')}"]
    if m.get("judge") and "reason" in m["judge"]:
        lines += ["", f"Judge not measured: {m['judge']['reason']}"]
    elif m.get("judge"):
        lines += report_lines(m["judge"])
    d = m.get("disentanglement")
    if d is not None:
        lines += ["", "## Disentanglement scores of f against the ground-truth factors", "",
                  f"MIG {d['mig']:.3f}; DCI disentanglement {d['dci']['disentanglement']:.3f}, completeness "
                  f"{d['dci']['completeness']:.3f}, informativeness {d['dci']['informativeness']:.3f} "
                  f"(factors: {', '.join(d['factors'])})."]
    return lines


def _figures(m: dict) -> list[str]:
    lines = []
    lines += ["", "## Figures", ""]
    captions = {"reconstructions": "Inputs, autoencoder and embedding reconstructions (Fig. 3)",
                "samples": "Random samples G(z*), z* from the Gaussian fitted to E's codes of training pictures",
                "retrieval": "Top-7 retrieval per attribute for two queries, one row per attribute, last row the whole f (Fig. 4)",
                "transfer": "Transfer k (first rows) and everything except k (last rows); source in the first column (Fig. 5)",
                }
    for key, file in m.get("figures", {}).items():
        caption = captions.get(key) or (f"Inputs and reconstructions with true and predicted {key[len('explain-'):]} "
                                        "(Fig. 6)" if key.startswith("explain-") else key)
        lines += [f"**{caption}**", "", f"![{key}]({file})", ""]
    return lines


def report_lines(j: dict) -> list[str]:
    """The judge's tables for report.md."""
    lines = ["", "## What the pictures show, read by an independent judge (SynthFaces)", "",
             f"A small CNN trained on the renders' exact factors (fsx.eval.judge; never on fsx's networks) reads "
             f"{j['samples']} pictures of the evaluated persons and what fsx draws of them. Its reading of the real "
             "pictures (row x) is the ceiling. Identity: verification of each picture against the real picture of "
             "another sample.", "",
             "| pictures | pose MAE (deg) | expression accuracy (chance 12.5%) | valence/arousal MAE | identity "
             "verification | style MAE | glasses/hat accuracy |", "|---|---|---|---|---|---|---|"]
    for name, r in j["of"].items():
        lines.append(f"| {name} | {r['pose_mae']:.2f} | {100 * r['expression_accuracy']:.1f}% | {r['va_mae']:.3f} | "
                     f"{100 * r['identity_verification']:.1f}% | {r['style_mae']:.3f} | "
                     f"{100 * r['glasses_hat_accuracy']:.1f}% |")
    e = j["edits"]
    for key, title in (("transfer", "transfer(A, B, [k]): B with A's k"), ("all_but", "'all but k': A with B's k"),
                       ("transfer_residual", "the residual edit, transfer(A, B, [k], residual='full')"),
                       ("all_but_residual", "the residual edit, 'all but k'"),
                       ("transfer_projected", "the projected residual edit, transfer(A, B, [k], residual='projected')"),
                       ("all_but_projected", "the projected residual edit, 'all but k'")):
        groups = list(e.get(key, {}))
        if not groups:
            continue
        exact = e.get(f"exact_{key}", {})
        lines += ["", f"**{title}** ({e['pairs']} pairs of different persons). Each cell: the factor of the column "
                  "as read on the edit, scored against A's and B's (A / B); the edited factor should read as its "
                  "donor's, every other as the face it stays on." + (
                      " The rows 'rendered exactly' are the same edit drawn by the renderer from the true factors: "
                      "the most the judge can read on any edit." if exact else ""), "",
                  "| edit | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for k, row in e[key].items():
            lines.append(f"| {k} | " + " | ".join(f"{row[c]['as_a']:.2f} / {row[c]['as_b']:.2f}" for c in groups) + " |")
            if k in exact:
                lines.append(f"| {k}, rendered exactly | " + " | ".join(
                    f"{exact[k][c]['as_a']:.2f} / {exact[k][c]['as_b']:.2f}" for c in groups) + " |")
        lines += ["", "Units: " + "; ".join(f"{c}: {e[key][groups[0]][c]['unit']}" for c in groups) + "."]
    gen = j["generated"]
    lines += ["", "**The judge's reading, to look at**: inputs over their embedding reconstructions, each with the "
              "expression the judge reads on both (green: the same)", "", "![judge](judge.png)"]
    lines += ["", f"Random samples G(z*): the judge's mean confidence in an expression category "
              f"{gen['expression_confidence']:.2f} on {gen['samples']} samples (on the real pictures: "
              f"{gen['expression_confidence_on_x']:.2f})."]
    return lines
