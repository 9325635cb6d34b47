"""Encoding, retrieval, editing, generation and auditing over the public model API (the functions behind
``fsx encode``, ``retrieve``, ``edit``, ``generate`` and ``audit``).

Images are named by a file path (PNG/JPEG) or ``synthfaces:SPLIT:INDEX`` (a SynthFaces sample).
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from fsx.checkpoint import load_tensors, read_metadata, save_tensors
from fsx.data.folder import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
EMBEDDINGS_FORMAT = "fsx-embeddings"


@functools.lru_cache(maxsize=4)
def _synthfaces(split: str, size: int):
    from fsx.data.synthfaces import SynthFaces

    return SynthFaces(split, image_size=size, cache=False)


def load_images(specs: Sequence[str], size: int) -> torch.Tensor:
    """(N, 3, size, size) in [0, 1]; a missing or unreadable file raises ValueError naming it."""
    out = []
    for spec in specs:
        spec = str(spec)
        if spec.startswith("synthfaces:"):
            try:
                _, split, index = spec.split(":")
                data = _synthfaces(split, size)
                out.append(data.images([int(index)])[0])
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{spec}: not a SynthFaces sample (synthfaces:train|test:INDEX): {exc}") from None
            continue
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"{path}: no such image file")
        out.append(read_image(path, size))
    return torch.stack(out)


def list_images(folder: str | Path) -> list[str]:
    folder = Path(folder)
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no PNG/JPEG images in this folder")
    return files


@torch.no_grad()
def encode_files(model, specs: Sequence[str], batch: int = 64) -> dict[str, torch.Tensor]:
    parts: dict[str, list] = {}
    for s in range(0, len(specs), batch):
        enc = model.encode(load_images(specs[s : s + batch], model.image_size))
        enc["f"] = torch.cat([enc[n] for n in model.attributes], 1)
        for k, v in enc.items():
            parts.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


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
