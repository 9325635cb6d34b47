"""An independent judge of SynthFaces images: a small CNN trained on the renders' exact factors, never on fsx's
networks nor with fsx's losses, that reads pose, expression, identity and style from any picture, real or
generated. It tells whether a decoded face or an edit *shows* an attribute, where fsx's own probes only say that
the embedding encodes it.

Trained on the SynthFaces train persons with every picture blurred by a random amount half the time, so that it
judges content rather than sharpness (decoders blur). ``python -m fsx.eval.judge`` rebuilds the shipped weights
(``judge.safetensors`` beside this file) bit for bit on the same machine and torch version, in about 10 minutes
on one core; the number of steps and the seed are in the file's metadata.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = Path(__file__).with_name("judge.safetensors")
SIZE = 64  # the judge reads every picture at 64 px
STYLE = ("bg_r", "bg_g", "bg_b", "light_x", "light_y", "temperature")  # style factors it regresses
CLASSES = ("glasses", "hat")  # style factors it classifies
POSE_SCALE = 30.0  # degrees per output unit
ID_DIM = 64


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Judge(nn.Module):
    """64 px picture -> pose (degrees), expression category logits and valence/arousal, a unit identity
    embedding, style factors and glasses/hat logits."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1),
            _block(4 * w, 4 * w, 2), nn.Flatten(),  # 4 x 4 positions kept: pose is where things are
        )
        self.trunk = nn.Sequential(nn.Linear(4 * w * 16, 256), nn.ReLU(inplace=True))
        self.pose = nn.Linear(256, 3)
        self.category = nn.Linear(256, 8)
        self.va = nn.Linear(256, 2)
        self.identity = nn.Linear(256, ID_DIM)
        self.style = nn.Linear(256, len(STYLE))
        self.classes = nn.Linear(256, len(CLASSES))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (N, 3, H, W) in [0, 1], any size (resized to 64 px)."""
        if images.shape[-1] != SIZE or images.shape[-2] != SIZE:
            images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        h = self.trunk(self.features(images * 2 - 1))
        return {"pose": self.pose(h) * POSE_SCALE, "category": self.category(h), "va": self.va(h),
                "identity": F.normalize(self.identity(h), dim=1), "style": self.style(h), "classes": self.classes(h)}


def load_judge(path: str | Path = WEIGHTS) -> Judge:
    """The shipped judge (safetensors, no pickle), in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no judge weights; build them with python -m fsx.eval.judge")
    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata().get("judge", "{}"))
    judge = Judge(width=meta.get("width", 32))
    judge.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return judge.eval()


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
    Deterministic in a fresh process (``python -m fsx.eval.judge``): one thread, a seeded generator for everything
    random (a second build in the same process can differ in the last bits: state kept from the first run)."""
    from safetensors.torch import save_file

    from fsx.data.synthfaces import SynthFaces

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


# --- reading pictures --------------------------------------------------------------------------------------
@torch.no_grad()
def read(judge: Judge, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    """The judge's outputs for (N, 3, H, W) pictures in [0, 1], in batches, on the CPU."""
    parts = [judge(images[s : s + batch].float().cpu()) for s in range(0, len(images), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def readings(out: dict, labels: dict) -> dict[str, float]:
    """How well a reading matches ``labels`` (SynthFaces' exact factors): pose MAE (degrees), expression
    category accuracy (chance 0.125) and valence/arousal MAE, style MAE and glasses/hat accuracy."""
    style = torch.stack([labels[k].float() for k in STYLE], 1)
    classes = torch.stack([labels[k].float() for k in CLASSES], 1)
    return {"pose_mae": float((out["pose"] - labels["pose"]).abs().mean()),
            "pose_mae_per_axis": [float(v) for v in (out["pose"] - labels["pose"]).abs().mean(0)],
            "expression_accuracy": float((out["category"].argmax(1) == labels["category"]).float().mean()),
            "va_mae": float((out["va"] - torch.stack([labels["valence"], labels["arousal"]], 1)).abs().mean()),
            "style_mae": float((out["style"] - style).abs().mean()),
            "glasses_hat_accuracy": float(((out["classes"] > 0).float() == classes).float().mean())}


def verification(embedding: torch.Tensor, reference: torch.Tensor, person: torch.Tensor, pairs: int = 2000,
                 seed: int = 0) -> float:
    """Identity verification accuracy (10 folds, half same-person pairs) between pictures read as ``embedding``
    and real pictures read as ``reference`` (the same rows): does a decoded face look like its person?"""
    from fsx.eval.metrics import verification_accuracy
    from fsx.eval.probes import sample_pairs

    i, j, same = sample_pairs(person, pairs, seed=seed)
    return verification_accuracy((embedding[i] * reference[j]).sum(1), same)


# Each SynthFaces factor group the judge reads, and how an edit of it is scored against A (the source) and B.
def _edit_score(group: str, out: dict, la: dict, lb: dict, ida: torch.Tensor, idb: torch.Tensor) -> dict:
    if group == "pose":
        return {"as_a": float((out["pose"] - la["pose"]).abs().mean()), "as_b": float((out["pose"] - lb["pose"]).abs().mean()),
                "unit": "pose MAE, degrees (lower: reads as that face)"}
    if group == "expression":
        cat = out["category"].argmax(1)
        return {"as_a": float((cat == la["category"]).float().mean()), "as_b": float((cat == lb["category"]).float().mean()),
                "unit": "expression category accuracy"}
    if group == "identity":
        closer = ((out["identity"] * ida).sum(1) > (out["identity"] * idb).sum(1)).float().mean()
        return {"as_a": float(closer), "as_b": float(1 - closer), "unit": "share of pairs closer to that person"}
    style_a = torch.stack([la[k].float() for k in STYLE], 1)
    style_b = torch.stack([lb[k].float() for k in STYLE], 1)
    return {"as_a": float((out["style"] - style_a).abs().mean()), "as_b": float((out["style"] - style_b).abs().mean()),
            "unit": "style factor MAE (lower: reads as that face)"}


@torch.no_grad()
def judge_model(model, data, indices, judge: Judge | None = None, n: int = 512, pairs: int = 256,
                seed: int = 0, batch: int = 64) -> dict:
    """The judge on x, on G(E(x)), on G(Phi^-1(Phi(E(x)))), on every edit transfer(A, B, [k]) and 'all but k'
    (each SynthFaces factor group read as A's or as B's), and on random samples G(z*) (its confidence)."""
    from fsx.data.face_params import GROUPS

    judge = judge or load_judge()
    g = torch.Generator().manual_seed(seed + 101)
    idx = indices[torch.randperm(len(indices), generator=g)[:n]]
    labels = data.labels_of(idx)
    x = data.images(idx)

    def through(fn, images):
        return torch.cat([fn(images[s : s + batch].to(model.device)).cpu() for s in range(0, len(images), batch)])

    real = read(judge, x)
    rows = {"x": real, "G(E(x))": read(judge, through(model.autoencode, x)),
            "G(Phi^-1(Phi(E(x))))": read(judge, through(model.reconstruct, x))}
    out = {"samples": len(idx), "of": {}}
    for name, reading in rows.items():
        out["of"][name] = {**readings(reading, labels),
                           "identity_verification": verification(reading["identity"], real["identity"],
                                                                 labels["person"], seed=seed)}
    a = idx[torch.randperm(len(idx), generator=g)[:pairs]]
    b = idx[torch.randperm(len(idx), generator=g)[:pairs]]
    la, lb = data.labels_of(a), data.labels_of(b)
    keep = la["person"] != lb["person"]  # pairs of two different persons
    a, b = a[keep], b[keep]
    la, lb = {k: v[keep] for k, v in la.items()}, {k: v[keep] for k, v in lb.items()}
    xa, xb = data.images(a), data.images(b)
    ra, rb = read(judge, xa), read(judge, xb)
    groups = [k for k in model.attributes if k in GROUPS]
    out["edits"] = {"pairs": len(a)}
    for everything_except in (False, True):
        key = "all_but" if everything_except else "transfer"
        out["edits"][key] = {}
        for k in groups:
            edited = torch.cat([model.transfer(xa[s : s + batch].to(model.device), xb[s : s + batch].to(model.device),
                                               [k], everything_except=everything_except).cpu()
                                for s in range(0, len(a), batch)])
            reading = read(judge, edited)
            out["edits"][key][k] = {j: _edit_score(j, reading, la, lb, ra["identity"], rb["identity"]) for j in groups}
    samples = model.generate(min(n, 256), generator=torch.Generator().manual_seed(seed)).cpu()
    confidence = lambda r: float(r["category"].softmax(1).max(1).values.mean())  # noqa: E731
    out["generated"] = {"expression_confidence": confidence(read(judge, samples)),
                        "expression_confidence_on_x": confidence(real), "samples": len(samples)}
    return out


@torch.no_grad()
def judge_figure(model, data, indices, out_path, judge: Judge | None = None, n: int = 8, seed: int = 0) -> None:
    """Inputs over their embedding reconstructions, each captioned with the expression the judge reads on the
    input and on the reconstruction (green frame: the same): what a viewer would see, for looking not reading."""
    from fsx.data.face_params import CATEGORIES
    from fsx.eval.figures import labelled_panel

    judge = judge or load_judge()
    idx = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed + 7))[:n]]
    x = data.images(idx)
    rec = model.reconstruct(x.to(model.device)).cpu()
    on_x, on_rec = read(judge, x)["category"].argmax(1), read(judge, rec)["category"].argmax(1)
    captions = [f"x: {CATEGORIES[int(a)]}\nG: {CATEGORIES[int(b)]}" for a, b in zip(on_x, on_rec)]
    labelled_panel(x, rec, captions, (on_x == on_rec).tolist(), out_path)


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
    for key, title in (("transfer", "transfer(A, B, [k]): B with A's k"), ("all_but", "'all but k': A with B's k")):
        groups = list(e.get(key, {}))
        if not groups:
            continue
        lines += ["", f"**{title}** ({e['pairs']} pairs of different persons). Each cell: the factor of the column "
                  "as read on the edit, scored against A's and B's (A / B); the edited factor should read as its "
                  "donor's, every other as the face it stays on.", "",
                  "| edit | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for k, row in e[key].items():
            lines.append(f"| {k} | " + " | ".join(f"{row[c]['as_a']:.2f} / {row[c]['as_b']:.2f}" for c in groups) + " |")
        lines += ["", "Units: " + "; ".join(f"{c}: {e[key][groups[0]][c]['unit']}" for c in groups) + "."]
    gen = j["generated"]
    lines += ["", "**The judge's reading, to look at**: inputs over their embedding reconstructions, each with the "
              "expression the judge reads on both (green: the same)", "", "![judge](judge.png)"]
    lines += ["", f"Random samples G(z*): the judge's mean confidence in an expression category "
              f"{gen['expression_confidence']:.2f} on {gen['samples']} samples (on the real pictures: "
              f"{gen['expression_confidence_on_x']:.2f})."]
    return lines


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
