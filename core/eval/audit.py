"""Sec. 5.5's audit: the samples whose label the embedding disagrees with most (``fsx audit``)."""

from __future__ import annotations

import csv
from pathlib import Path

import attrs
import torch

from fsx.data.sources import join_vector_labels
from fsx.data.synthfaces import SynthFaces
from fsx.embeddings import default_attribute
from fsx.eval.data import EvalSet, split_source
from fsx.eval.embedding import encode_all
from fsx.eval.figures import labelled_panel
from fsx.eval.probes import fit_classifier, ridge_fit_predict
from fsx.plugins import get_registry


@attrs.frozen
class AuditResult:
    rows: list  # one dict per sample: index, true, predicted, score (p_true, or the absolute error)
    images: torch.Tensor  # the audited samples, in the order of rows
    kind: str  # classification or regression


@torch.no_grad()
def audit(model, data: str = "synthfaces", split: str = "test", attribute: str | None = None, n: int = 16,
          train_samples: int = 4000, test_samples: int = 2000, seed: int = 0) -> AuditResult:
    """Sec. 5.5: the samples whose label the embedding disagrees with most. The attribute's probe is fitted on
    its sub-vector of probe-fitting samples; of the held-out samples, those with the lowest probability of their
    own class (classification) or the largest error (regression) come first. ``attribute`` None: the model's first
    attribute with a classification probe, else its first with a regression probe."""
    attribute = attribute or default_attribute(model, ("classification", "regression"))
    if attribute is None:
        raise ValueError(f"audit: none of the model's attributes ({', '.join(model.attributes)}) has a "
                         "classification or regression probe")
    a = get_registry().get(attribute)
    if a.name not in model.attributes:
        raise ValueError(f"--attribute {a.name!r}: the model has no such sub-vector (it has {', '.join(model.attributes)})")
    if a.probe is None or a.probe.kind not in ("classification", "regression"):
        raise ValueError(f"audit needs an attribute probed by classification or regression; {a.name!r} is probed "
                         f"by {a.probe.kind if a.probe else 'nothing'}")
    size, label = model.image_size, a.probe.label
    g = torch.Generator().manual_seed(seed)
    if data == "synthfaces":
        fit_src, test_src = SynthFaces("train", image_size=size, cache=False), SynthFaces(split, image_size=size, cache=False)
        join_vector_labels(fit_src.labels), join_vector_labels(test_src.labels)
        fit = EvalSet.read(fit_src, torch.randperm(len(fit_src), generator=g)[:train_samples].sort().values.tolist())
        test = EvalSet.read(test_src, torch.randperm(len(test_src), generator=g)[:test_samples].sort().values.tolist())
    else:
        s = split_source(data, size, None, train_samples, test_samples, seed)
        fit, test = s.fit, s.test
    for where, part in (("probe-fitting", fit), ("test", test)):
        if label not in part.labels:
            raise ValueError(f"audit of {a.name!r}: the {where} data has no {label!r} label")
    tr = torch.nonzero(a.label_present(label, fit.labels[label])).squeeze(1)
    te = torch.nonzero(a.label_present(label, test.labels[label])).squeeze(1)
    xt, xs = encode_all(model, fit, tr)[a.name], encode_all(model, test, te)[a.name]
    yt, ys = fit.labels[label][tr], test.labels[label][te]
    if a.probe.kind == "classification":
        classes = len(a.probe.class_names) or int(max(yt.max(), ys.max())) + 1
        _, predict = fit_classifier(xt, yt.long(), classes, seed=seed)
        prob = predict(xs)
        score = prob.gather(1, ys.long()[:, None]).squeeze(1)
        order = score.argsort()[:n]
        names = list(a.probe.class_names) or [str(c) for c in range(classes)]
        rows = [{"index": int(test.origin[te[i]]), "true": names[int(ys[i])], "predicted": names[int(prob[i].argmax())],
                 "score": round(float(score[i]), 4)} for i in order]
    else:
        yt2, ys2 = yt.float().view(len(yt), -1), ys.float().view(len(ys), -1)
        pred = ridge_fit_predict(xt, yt2, xs)
        score = (pred - ys2).abs().mean(1)
        order = score.argsort(descending=True)[:n]
        fmt = lambda v: "/".join(f"{x:.1f}" for x in v.tolist())  # noqa: E731
        rows = [{"index": int(test.origin[te[i]]), "true": fmt(ys2[i]), "predicted": fmt(pred[i]), "score": round(float(score[i]), 4)}
                for i in order]
    return AuditResult(rows, test.images(te[order]), a.probe.kind)


def write_audit(result: AuditResult, model, out: str | Path) -> None:
    """audit.csv and audit.png (inputs over reconstructions, captioned with the label and what the probe saw)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "audit.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["index", "true", "predicted", "score"])
        w.writeheader()
        w.writerows(result.rows)
    with torch.no_grad():
        rec = model.reconstruct(result.images.to(model.device)).cpu()
    caps = [f"label {r['true']}\nseen {r['predicted']}" for r in result.rows]
    ok = [r["true"] == r["predicted"] for r in result.rows] if result.kind == "classification" else [False] * len(result.rows)
    labelled_panel(result.images, rec, caps, ok, out / "audit.png")
