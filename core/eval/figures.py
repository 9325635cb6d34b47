"""The report's figures (Fig. 3-6 of the paper) and its markdown text."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.utils import make_grid, save_image



@torch.no_grad()
def reconstructions(model, images) -> torch.Tensor:
    return torch.cat([images, model.autoencode(images), model.reconstruct(images)])


@torch.no_grad()
def retrieval_panel(model, data, indices, emb, queries, k: int = 7) -> torch.Tensor:
    """Fig. 4: per query, one row per attribute (and one for the whole f): the query, then its top-k."""
    rows = []
    for q in queries:
        for name in [*model.attributes, "f"]:
            x = F.normalize(emb[name], dim=1)
            sim = x @ x[q]
            sim[q] = -2  # not the query itself
            top = sim.topk(min(k, len(sim) - 1)).indices
            row = data.images(indices[torch.cat([torch.tensor([q]), top])])
            pad = torch.ones(k + 1 - len(row), *row.shape[1:])  # fewer samples than k: white cells keep rows aligned
            rows.append(torch.cat([row, pad]))
    return torch.cat(rows)


@torch.no_grad()
def transfer_panel(model, data, indices, source: int, targets) -> torch.Tensor:
    """Fig. 5: first row the targets; then 'transfer k' rows, then 'everything except k' rows; the first column
    holds the source (blank in the first row)."""
    src = data.images(indices[[source]]).to(model.device)
    tgt = data.images(indices[targets]).to(model.device)
    blank = torch.ones_like(src)
    rows = [torch.cat([blank, tgt])]
    for everything_except in (False, True):
        for name in model.attributes:
            rows.append(torch.cat([src, model.transfer(src, tgt, [name], everything_except=everything_except)]))
    return torch.cat(rows).cpu()


def _upscale(images: torch.Tensor, size: int = 128) -> torch.Tensor:
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def labelled_panel(top: torch.Tensor, bottom: torch.Tensor, captions: list[str], ok: list[bool], path: Path) -> None:
    """Two rows of faces (e.g. inputs and reconstructions) with a caption and a green/red frame per column."""
    grid = make_grid(torch.cat([_upscale(top), _upscale(bottom)]), nrow=len(top), padding=6, pad_value=1.0)
    img = Image.fromarray((grid.permute(1, 2, 0) * 255).byte().numpy())
    canvas = Image.new("RGB", (img.width, img.height + 36), "white")
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    cell = 128 + 6
    for c, (text, good) in enumerate(zip(captions, ok)):
        x0 = 6 + c * cell
        draw.rectangle([x0 - 3, 3, x0 + 130, 2 * cell + 2], outline=(0, 160, 0) if good else (200, 0, 0), width=3)
        for line_no, line in enumerate(text.split("\n")[:2]):
            draw.text((x0, img.height + 2 + 16 * line_no), line, fill=(0, 0, 0))
    canvas.save(path)


def all_figures(model, data, indices, emb, labels, explained: dict, out: Path, seed: int = 0) -> dict:
    """Figures 3-6 as PNGs in ``out``; ``explained`` maps each classification attribute to (its probe, the probe's
    predictions on the test samples), for a Fig. 6 panel per attribute."""
    out = Path(out)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(indices), generator=g)
    files = {}
    x = data.images(indices[pick[:8]]).to(model.device)
    save_image(reconstructions(model, x), out / "reconstructions.png", nrow=8, padding=2, pad_value=1.0)
    files["reconstructions"] = "reconstructions.png"
    save_image(model.generate(32, generator=torch.Generator().manual_seed(seed)), out / "samples.png", nrow=8,
               padding=2, pad_value=1.0)
    files["samples"] = "samples.png"
    save_image(retrieval_panel(model, data, indices, emb, [int(pick[0]), int(pick[1])]), out / "retrieval.png",
               nrow=8, padding=2, pad_value=1.0)
    files["retrieval"] = "retrieval.png"
    save_image(transfer_panel(model, data, indices, int(pick[2]), pick[3:9]), out / "transfer.png", nrow=7, padding=2,
               pad_value=1.0)
    files["transfer"] = "transfer.png"
    cols = pick[:8]
    for name, (probe, pred) in explained.items():
        if probe.label not in labels:
            continue
        true, guess = labels[probe.label][cols].long(), pred[cols].long()
        classes = list(probe.class_names) or [str(c) for c in range(int(max(true.max(), guess.max())) + 1)]
        caps = [f"true {classes[int(t)]}\npred {classes[int(p)]}" for t, p in zip(true, guess)]
        xs = data.images(indices[cols]).to(model.device)
        labelled_panel(xs.cpu(), model.reconstruct(xs).cpu(), caps, (true == guess).tolist(), out / f"explain-{name}.png")
        files[f"explain-{name}"] = f"explain-{name}.png"
    return files


def _fmt(kind: str, v) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:.2f}" if kind == "regression" else (f"{100 * v:.1f}%" if kind == "verification" else f"{v:.3f}")


def _latent_lines(lat: dict | None) -> list[str]:
    if not lat:
        return []
    return [f"Codes E(x) against the prior N(0, I) that random samples are drawn from: Frechet distance "
            f"{lat['frechet_to_prior']:.2f} (0 = same mean and covariance), RMS norm {lat['rms_norm']:.2f} vs "
            f"{lat['prior_rms_norm']:.2f}, mean |mean| {lat['mean_abs_mean']:.3f}, mean std {lat['mean_std']:.3f}.", ""]


def report(m: dict, names: list[str]) -> str:
    info = m.get("model", {})
    lines = [
        "# fsx evaluation report", "",
        f"Model trained on {info.get('data', '?')} with preset {info.get('preset', '?')} "
        f"(steps {info.get('steps', {})}); image size {m['image_size']} px. Evaluated on {m.get('data', 'synthfaces')}: "
        f"{m.get('split', '')}. Wall time {m.get('wall_time_s', '?')} s.", "",
        *([f"{len(m['skipped'])} unreadable image(s) were left out, e.g. {m['skipped'][0]}", ""] if m.get("skipped") else []),
        "## Reconstruction (Table 1)", "",
        "| path | RMSE (0-255) |", "|---|---|",
        f"| autoencoder G(E(x)) | {m['rmse']['aae']:.2f} |",
        f"| embedding G(Phi^-1(Phi(E(x)))) | {m['rmse']['embedding']:.2f} |", "",
        (f"FID against {m['fid']['count']} real pictures of the evaluated persons (standard FID network; biased "
         f"upwards at small counts): random samples G(z*) {m['fid']['samples']:.1f}, reconstructions G(E(x)) of "
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
    for attr, row in m["table"].items():
        res, kind = row["results"], row["kind"]
        metric = {"regression": "MAE", "verification": "accuracy", "classification": "AUC"}[kind]
        if kind == "regression" and row.get("unit"):
            metric = f"MAE ({row['unit']})"
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
        from fsx.eval.judge import report_lines

        lines += report_lines(m["judge"])
    d = m.get("disentanglement")
    if d is not None:
        lines += ["", "## Disentanglement scores of f against the ground-truth factors", "",
                  f"MIG {d['mig']:.3f}; DCI disentanglement {d['dci']['disentanglement']:.3f}, completeness "
                  f"{d['dci']['completeness']:.3f}, informativeness {d['dci']['informativeness']:.3f} "
                  f"(factors: {', '.join(d['factors'])})."]
    lines += ["", "## Figures", ""]
    captions = {"reconstructions": "Inputs, autoencoder and embedding reconstructions (Fig. 3)",
                "samples": "Random samples G(z*), z* ~ N(0, I)",
                "retrieval": "Top-7 retrieval per attribute for two queries, one row per attribute, last row the whole f (Fig. 4)",
                "transfer": "Transfer k (first rows) and everything except k (last rows); source in the first column (Fig. 5)",
                }
    for key, file in m.get("figures", {}).items():
        caption = captions.get(key) or (f"Inputs and reconstructions with true and predicted {key[len('explain-'):]} "
                                        "(Fig. 6)" if key.startswith("explain-") else key)
        lines += [f"**{caption}**", "", f"![{key}]({file})", ""]
    return "\n".join(lines) + "\n"
