"""Embeddings of pictures (the functions behind ``fsx encode`` and ``fsx retrieve``): encode pictures named as
``fsx.data.specs`` reads them, keep the sub-vectors in a safetensors file that records its model, and rank a
gallery by one sub-vector."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fsx.checkpoint import load_tensors, read_metadata, save_tensors
from fsx.data.images import ImageReadError
from fsx.data.specs import load_image
from fsx.plugins import get_registry

EMBEDDINGS_FORMAT = "fsx-embeddings"


@torch.no_grad()
def encode_files(model, specs: Sequence[str], batch: int = 64, strict: bool = False, aligner=None):
    """Sub-vectors of image files -> (embeddings, the files encoded, the files skipped with their reasons).

    An unreadable file is skipped and reported (``strict``: raise ImageReadError at the first one instead); with
    ``aligner`` (``fsx.data.specs.PhotoAligner``) raw photos are aligned as ``fsx prepare`` aligns them."""
    kept, skipped = [], []

    def batches():
        for s in range(0, len(specs), batch):
            images = []
            for spec in specs[s : s + batch]:
                try:
                    images.append(load_image(str(spec), model.image_size, aligner))
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
                                    "attributes": model.attributes, "model": model.metadata,
                                    "model_fingerprint": model.fingerprint()})


def load_embeddings(path, model=None) -> tuple[dict, list[str]]:
    """The embeddings and files of an ``fsx encode`` file; with ``model``, a ValueError unless that model made
    them (a gallery encoded by another model ranks nonsense, or has other sub-vector sizes)."""
    meta = read_metadata(path, expected_format=EMBEDDINGS_FORMAT)
    if model is not None:
        made_by, mine = meta.get("model_fingerprint"), model.fingerprint()  # hashing every weight once
        if meta.get("attributes") != model.attributes or (made_by is not None and made_by != mine):
            raise ValueError(f"{path}: these embeddings were made by another model (sub-vectors "
                             f"{meta.get('attributes')}, weights {made_by or 'not recorded'}; this model: "
                             f"{model.attributes}, weights {mine}); encode the gallery with this model")
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


