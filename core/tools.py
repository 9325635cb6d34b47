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
    return read_image(spec, size)


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
    parts: dict[str, list] = {}
    kept, skipped = [], []
    for s in range(0, len(specs), batch):
        images, names = [], []
        for spec in specs[s : s + batch]:
            try:
                images.append(_load_one(str(spec), model.image_size))
                names.append(str(spec))
            except ImageReadError as exc:
                if strict:
                    raise
                skipped.append(str(exc))
        if not images:
            continue
        enc = model.encode(torch.stack(images))
        enc["f"] = torch.cat([enc[n] for n in model.attributes], 1)
        for k, v in enc.items():
            parts.setdefault(k, []).append(v.cpu())
        kept += names
    if not kept:
        raise ImageReadError(f"none of the {len(specs)} images could be read (first: {skipped[0]})")
    return {k: torch.cat(v) for k, v in parts.items()}, kept, skipped


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


@torch.no_grad()
def audit(model, split: str = "test", attribute: str = "expression", n: int = 16, train_samples: int = 4000,
          test_samples: int = 2000, seed: int = 0) -> list[dict]:
    """Sec. 5.5: the samples whose label the embedding disagrees with most. A classifier probe is fitted on the
    attribute's sub-vector of training images; the test samples with the lowest probability of their own
    label come first."""
    from fsx.data.synthfaces import SynthFaces
    from fsx.eval.evaluate import encode_all
    from fsx.eval.probes import fit_classifier
    from fsx.plugins import get_registry

    a = get_registry().get(attribute)
    if a.probe is None or a.probe.kind != "classification":
        raise ValueError(f"audit needs a classified attribute; {a.name!r} is probed by {a.probe and a.probe.kind}")
    size = model.image_size
    train, test = SynthFaces("train", image_size=size, cache=False), SynthFaces(split, image_size=size, cache=False)
    g = torch.Generator().manual_seed(seed)
    tr = torch.randperm(len(train), generator=g)[:train_samples]
    te = torch.randperm(len(test), generator=g)[:test_samples]
    xt, xs = encode_all(model, train, tr)[a.name], encode_all(model, test, te)[a.name]
    yt, ys = train.labels[a.probe.label][tr].long(), test.labels[a.probe.label][te].long()
    classes = len(a.probe.class_names) or int(yt.max()) + 1
    _, predict = fit_classifier(xt, yt, classes, seed=seed)
    prob = predict(xs)
    p_true = prob.gather(1, ys[:, None]).squeeze(1)
    order = p_true.argsort()[:n]
    names = list(a.probe.class_names) or [str(c) for c in range(classes)]
    return [{"index": int(te[i]), "split": split, "true": names[int(ys[i])], "predicted": names[int(prob[i].argmax())],
             "p_true": float(p_true[i])} for i in order]


def write_audit(rows: list[dict], model, out: str | Path) -> None:
    """audit.csv and audit.png (inputs over reconstructions, captioned with both labels)."""
    from fsx.eval.figures import labelled_panel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "audit.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["index", "split", "true", "predicted", "p_true"])
        w.writeheader()
        w.writerows(rows)
    x = load_images([f"synthfaces:{r['split']}:{r['index']}" for r in rows], model.image_size)
    with torch.no_grad():
        rec = model.reconstruct(x).cpu()
    caps = [f"label {r['true']}\nseen {r['predicted']}" for r in rows]
    labelled_panel(x, rec, caps, [r["true"] == r["predicted"] for r in rows], out / "audit.png")
