"""The report's figures (Fig. 3-6 of the paper) and its markdown text."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.utils import make_grid, save_image

from fsx.data.face_params import CATEGORIES
from fsx.eval.judge import Judge, load_judge, read


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


@torch.no_grad()
def judge_figure(model, data, indices, out_path, judge: Judge | None = None, n: int = 8, seed: int = 0) -> None:
    """Inputs over their embedding reconstructions, each captioned with the expression the judge reads on the
    input and on the reconstruction (green frame: the same): what a viewer would see, for looking not reading."""
    judge = judge or load_judge()
    idx = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed + 7))[:n]]
    x = data.images(idx)
    rec = model.reconstruct(x.to(model.device)).cpu()
    on_x, on_rec = read(judge, x)["category"].argmax(1), read(judge, rec)["category"].argmax(1)
    captions = [f"x: {CATEGORIES[int(a)]}\nG: {CATEGORIES[int(b)]}" for a, b in zip(on_x, on_rec)]
    labelled_panel(x, rec, captions, (on_x == on_rec).tolist(), out_path)
