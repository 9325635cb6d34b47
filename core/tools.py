"""Encoding, retrieval, editing, generation and auditing over the public model API (the functions behind
``fsx encode``, ``retrieve``, ``edit``, ``generate`` and ``audit``).

Images are named by a file path (any of ``fsx.data.images.IMAGE_SUFFIXES``) or ``synthfaces:SPLIT:INDEX`` (a
SynthFaces sample).
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Sequence

import attrs
import torch
import torch.nn.functional as F

from fsx.checkpoint import load_tensors, read_metadata, save_tensors
from fsx.data.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, read_image

EMBEDDINGS_FORMAT = "fsx-embeddings"


@functools.lru_cache(maxsize=4)
def _synthfaces(split: str, size: int):
    from fsx.data.synthfaces import SynthFaces

    return SynthFaces(split, image_size=size, cache=False)


def load_images(specs: Sequence[str], size: int) -> torch.Tensor:
    """(N, 3, size, size) in [0, 1]; a missing or unreadable file raises ImageReadError naming it."""
    return torch.stack([_load_one(str(spec), size) for spec in specs])


def _load_one(spec: str, size: int) -> torch.Tensor:
    if spec.startswith("synthfaces:"):
        try:
            _, split, index = spec.split(":")
            return _synthfaces(split, size).images([int(index)])[0]
        except (ValueError, IndexError, KeyError) as exc:
            raise ImageReadError(f"{spec}: not a SynthFaces sample (synthfaces:train|test:INDEX): {exc}") from None
    if spec.startswith("prepared:"):  # prepared:DIR:ROW, a crop of fsx prepare's output
        folder, _, row = spec[len("prepared:"):].rpartition(":")
        try:
            return _prepared(folder, size).get_batch([int(row)])[0][0]
        except (ValueError, IndexError, FileNotFoundError) as exc:
            raise ImageReadError(f"{spec}: not a prepared crop (prepared:DIR:ROW): {exc}") from None
    return read_image(spec, size)


@functools.lru_cache(maxsize=4)
def _prepared(folder: str, size: int):
    from fsx.data.prepared import PreparedSource

    return PreparedSource(folder, image_size=size)


def list_images(folder: str | Path) -> list[str]:
    """Every image file under ``folder`` (recursively, by suffix; folders named like images are not files)."""
    folder = Path(folder)
    files = sorted(str(p) for p in folder.rglob("*") if is_image_file(p))
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


@torch.no_grad()
def encode_files(model, specs: Sequence[str], batch: int = 64, strict: bool = False):
    """Sub-vectors of image files -> (embeddings, the files encoded, the files skipped with their reasons).

    An unreadable file is skipped and reported (``strict``: raise ImageReadError at the first one instead)."""
    kept, skipped = [], []

    def batches():
        for s in range(0, len(specs), batch):
            images = []
            for spec in specs[s : s + batch]:
                try:
                    images.append(_load_one(str(spec), model.image_size))
                    kept.append(str(spec))
                except ImageReadError as exc:
                    if strict:
                        raise
                    skipped.append(str(exc))
            if images:
                yield torch.stack(images)

    embeddings = model.encode_batches(batches())
    if not kept:
        raise ImageReadError(f"none of the {len(specs)} images could be read (first: {skipped[0] if skipped else '-'})")
    return embeddings, kept, skipped


def save_embeddings(path, embeddings: dict, files: Sequence[str], model) -> None:
    save_tensors(path, embeddings, {"format": EMBEDDINGS_FORMAT, "files": list(files),
                                    "attributes": model.attributes, "model": model.metadata})


def load_embeddings(path) -> tuple[dict, list[str]]:
    meta = read_metadata(path, expected_format=EMBEDDINGS_FORMAT)
    return load_tensors(path), meta["files"]


def retrieve(query: dict, gallery: dict, files: Sequence[str], by: str, k: int = 7) -> list[tuple[str, float]]:
    """The k gallery items most similar (cosine) to the query in sub-vector ``by`` ('all' = the whole f)."""
    key = "f" if by == "all" else by
    if key not in gallery:
        raise ValueError(f"--by {by!r}: the embeddings have {sorted(k for k in gallery if k not in ('z',))}")
    q = F.normalize(query[key][:1], dim=1)
    g = F.normalize(gallery[key], dim=1)
    sim = (g @ q.T).squeeze(1)
    top = sim.topk(min(k, len(sim)))
    return [(files[i], float(s)) for s, i in zip(top.values, top.indices)]


def model_attributes(model) -> list:
    """The registry's Attribute objects for the model's sub-vectors, in layout order."""
    from fsx.plugins import get_registry

    return get_registry().resolve(list(model.attributes))


def default_attribute(model, kinds: Sequence[str], label: str | None = None) -> str | None:
    """The model's first attribute whose probe is of one of ``kinds`` (tried in that order) and, if given, reads
    ``label``: how a tool picks its default attribute without naming one."""
    attributes = model_attributes(model)
    for kind in kinds:
        for a in attributes:
            if a.probe is not None and a.probe.kind == kind and label in (None, a.probe.label):
                return a.name
    return None


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
    from fsx.eval.data import EvalSet, split_source
    from fsx.eval.evaluate import encode_all
    from fsx.eval.probes import fit_classifier, ridge_fit_predict
    from fsx.plugins import get_registry

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
        from fsx.data.synthfaces import SynthFaces

        from fsx.data.sources import join_vector_labels

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
    from fsx.eval.figures import labelled_panel

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
