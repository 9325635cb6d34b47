"""Measures only exact ground truth allows (SynthFaces): the judge on pictures, reconstructions, edits and
samples; the error of edits against their exactly rendered counterfactuals; MIG and DCI against the factors."""

from __future__ import annotations

import itertools

import torch

from fsx.data.face_params import GROUPS
from fsx.data.synthfaces import SynthFaces
from fsx.eval.judge import CLASSES, STYLE, Judge, load_judge, read
from fsx.eval.metrics import dci, mig, verification_accuracy
from fsx.eval.probes import sample_pairs


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
    (each SynthFaces factor group read as A's or as B's), each also as both residual edits (``transfer_residual``,
    ``all_but_residual``: ``FaceModel.transfer(..., residual="full")``; ``transfer_projected``, ``all_but_projected``:
    ``residual="projected"``) and, where ``data`` renders
    counterfactuals, on the same edits rendered exactly (``exact_transfer``, ``exact_all_but``: the ceiling of
    each edit's reading, as x is the ceiling of a reconstruction's), and on random samples G(z*) (its
    confidence)."""
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
    suffix = {None: "", "full": "_residual", "projected": "_projected"}
    for residual, everything_except in itertools.product(suffix, (False, True)):
        key = ("all_but" if everything_except else "transfer") + suffix[residual]
        out["edits"][key] = {}
        for k in groups:
            edited = torch.cat([model.transfer(xa[s : s + batch].to(model.device), xb[s : s + batch].to(model.device),
                                               [k], everything_except=everything_except, residual=residual).cpu()
                                for s in range(0, len(a), batch)])
            reading = read(judge, edited)
            out["edits"][key][k] = {j: _edit_score(j, reading, la, lb, ra["identity"], rb["identity"]) for j in groups}
            # the exact edit, rendered: the most any edit reads as (one render, whichever path the model takes)
            if residual is None and hasattr(data, "counterfactual"):
                exact = read(judge, data.counterfactual(a, b, [k], everything_except=everything_except))
                out["edits"].setdefault(f"exact_{key}", {})[k] = {
                    j: _edit_score(j, exact, la, lb, ra["identity"], rb["identity"]) for j in groups}
    samples = model.generate(min(n, 256), generator=torch.Generator().manual_seed(seed)).cpu()
    confidence = lambda r: float(r["category"].softmax(1).max(1).values.mean())  # noqa: E731
    out["generated"] = {"expression_confidence": confidence(read(judge, samples)),
                        "expression_confidence_on_x": confidence(real), "samples": len(samples)}
    return out


@torch.no_grad()
def counterfactual_errors(model, data: SynthFaces, pairs: int = 256, seed: int = 0) -> dict:
    """RMSE (0-255) of transfer(A, B, [k]) and of 'everything except k' against the exactly rendered
    counterfactual, next to the plain reconstruction RMSE of the same targets."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(len(data), (pairs,), generator=g)
    b = torch.randint(len(data), (pairs,), generator=g)
    xa, xb = data.images(a).to(model.device), data.images(b).to(model.device)
    rmse = lambda p, t: float(((p - t.to(p.device)) * 255).pow(2).mean().sqrt())  # noqa: E731
    out = {"reconstruction": rmse(model.reconstruct(xb), xb), "transfer": {}, "everything_except": {}}
    for name in model.attributes:
        if name not in GROUPS:
            continue
        out["transfer"][name] = rmse(model.transfer(xa, xb, [name]), data.counterfactual(a, b, [name]))
        out["everything_except"][name] = rmse(model.transfer(xa, xb, [name], everything_except=True),
                                              data.counterfactual(a, b, [name], everything_except=True))
    return out


def disentanglement_scores(emb: dict, data: SynthFaces, indices) -> dict:
    """MIG and DCI of the whole embedding f against SynthFaces' ground-truth factors."""
    lab = data.labels_of(indices)
    par = data.params_of(indices)
    ident = par["identity"][:, [GROUPS["identity"].index(f) for f in ("face_w", "eye_sep", "skin_r", "hair_r")]]
    style = par["style"][:, [GROUPS["style"].index(f) for f in ("bg_r", "light_x", "glasses", "hat")]]
    continuous = torch.cat([lab["pose"], lab["valence"][:, None], lab["arousal"][:, None], ident, style], 1)
    names = ["yaw", "pitch", "roll", "valence", "arousal", "face_w", "eye_sep", "skin_r", "hair_r", "bg_r",
             "light_x", "glasses", "hat"]
    discrete = torch.stack([lab["category"], lab["person"] - lab["person"].min()], 1)
    return {"factors": names + ["category", "person"],
            "mig": mig(emb["f"], torch.cat([_rank_bins(continuous), discrete], 1)),
            "dci": dci(emb["f"], continuous)}


def _rank_bins(x: torch.Tensor, bins: int = 20) -> torch.Tensor:
    """Factors into discrete classes (long) for MIG: a factor with at most ``bins`` distinct values (glasses,
    hat: 0/1) keeps one class per value; a continuous one gets equal-count bins whose edges are quantiles, so
    equal values always share a bin (sample order never decides a bin)."""
    cols = []
    for col in x.T.contiguous():  # rows of x.T are strided columns of x; searchsorted wants them contiguous
        values = col.unique()
        if len(values) <= bins:
            cols.append(torch.searchsorted(values, col))
        else:
            edges = torch.quantile(col.double(), torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1])
            cols.append(torch.bucketize(col.double(), edges, right=True))
    return torch.stack(cols, 1).long()
