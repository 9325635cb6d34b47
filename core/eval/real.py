"""Measures on real pictures: LFW verification (Table 2) and an independent identity reader (dlib) on edits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fsx.data.faces import FaceAnalyser
from fsx.data.faces.prepared import PreparedSource
from fsx.data.images import ImageReadError, read_image
from fsx.data.real import lfw_pairs
from fsx.eval.embedding import subvectors
from fsx.eval.metrics import verification_fold_accuracy
from fsx.eval.probes import cosine_scores
from fsx.plugins import get_registry


LFW_CROP = 0.6  # the centre 150 x 150 px of LFW's 250 x 250 originals, where the face is


def lfw_face(path, size: int, crop: float = LFW_CROP) -> tuple[torch.Tensor, tuple[int, int]]:
    """An LFW image's centre crop of ``crop`` x its shorter side, at ``size`` px, and the file's (width, height)."""
    with Image.open(path) as im:
        w, h = im.size
    side = round(min(w, h) * crop)
    return read_image(path, size, ((w - side) // 2, (h - side) // 2, side, side)), (w, h)


@torch.no_grad()
def lfw_verification(model, root: str | Path, crop: float = LFW_CROP, batch: int = 128) -> dict:
    """Table 2 on real data: LFW's 10-fold pairs protocol (pairs.txt folds, thresholds chosen on 9 folds) with
    every sub-vector and with everything but identity.

    ``root`` is LFW as downloaded, or ``fsx prepare lfw=...``'s output (aligned crops, its copy of pairs.txt):
    there a picture in which no face was found leaves its pairs out, counted as skipped.

    Each image is centre-cropped to ``crop`` of its side (LFW's originals are 250 x 250, so 150 px; copies at
    another size are cropped alike, and the sizes met are reported), then resized to the model's size. Pairs
    with an unreadable image are left out and counted. Returns ``accuracy`` per sub-vector, ``pairs`` used,
    ``skipped`` (file and reason) and ``sizes`` (image sizes met, with counts)."""
    pairs = lfw_pairs(root)
    files = sorted({p for a, b, _, _ in pairs for p in (a, b)})
    size = model.image_size
    readable, skipped, sizes = [], {}, {}

    def prepared_batches():  # fsx prepare's aligned crops, found by the file each came from
        source = PreparedSource(root, image_size=size, name="lfw")
        row = {Path(root) / f: i for i, f in enumerate(source.files)}
        for f in files:
            if f in row:
                readable.append(f)
            else:
                skipped[f] = f"{f}: fsx prepare kept no face from it"
        sizes[f"prepared {source.prepared_size}x{source.prepared_size}"] = len(readable)
        for s in range(0, len(readable), batch):
            yield source.get_batch([row[f] for f in readable[s : s + batch]])[0]

    def batches():
        for s in range(0, len(files), batch):
            imgs = []
            for f in files[s : s + batch]:
                try:
                    image, (w, h) = lfw_face(f, size, crop)
                    imgs.append(image)
                except (OSError, ImageReadError) as exc:
                    skipped[f] = str(exc) if isinstance(exc, ImageReadError) else f"{f}: not a readable image ({exc})"
                    continue
                readable.append(f)
                sizes[f"{w}x{h}"] = sizes.get(f"{w}x{h}", 0) + 1
            if imgs:
                yield torch.stack(imgs)

    prepared = (Path(root) / "manifest.json").is_file()
    embeddings = model.encode_batches(prepared_batches() if prepared else batches())
    kept = [p for p in pairs if p[0] not in skipped and p[1] not in skipped]
    if not kept:
        raise ValueError(f"{root}: no LFW pair has two readable images ({len(skipped)} unreadable)")
    feats = subvectors(embeddings, list(model.attributes))
    index = {f: i for i, f in enumerate(readable)}
    i = torch.tensor([index[a] for a, _, _, _ in kept])
    j = torch.tensor([index[b] for _, b, _, _ in kept])
    same = torch.tensor([s for _, _, s, _ in kept])
    fold = torch.tensor([k for _, _, _, k in kept])
    # LFW pairs are same/different person: "everything but k" is reported for the attributes that verify persons
    names = list(model.attributes) + [f"not_{a.name}" for a in get_registry().resolve(list(model.attributes))
                                      if a.probe is not None and a.probe.kind == "verification" and a.probe.label == "person"]
    return {"accuracy": {n: verification_fold_accuracy(cosine_scores(feats[n], i, j), same, fold) for n in names},
            "pairs": len(kept), "pairs_listed": len(pairs), "skipped": sorted(skipped.values()), "sizes": sizes}


@torch.no_grad()
def identity_reader(model, data, indices, pairs: int = 100, seed: int = 0, batch: int = 50) -> dict:
    """An independent identity reader on real faces: dlib's face descriptor (never trained with fsx) scores how
    close transfer(A, B, [k]) is to A and to B, as encoder-based editing papers do with ArcFace. Per edit: the
    share of pairs whose edit is closer to A than to B, and the mean descriptor distances to each; the same for
    G(Phi^-1(Phi(E(B)))) and for B itself (the reader's ceiling). A and B are different persons where the data
    labels persons. Transferring identity should read as A; every other edit should keep B."""
    reader = FaceAnalyser(size=model.image_size, equalize="off")
    g = torch.Generator().manual_seed(seed + 17)
    n = min(pairs, len(indices) // 2)
    order = torch.randperm(len(indices), generator=g)
    a, b = indices[order[:n]], indices[order[n : 2 * n]]
    la, lb = data.labels_of(a), data.labels_of(b)
    if "person" in la:  # keep pairs of two different persons
        keep = la["person"] != lb["person"]
        a, b = a[keep], b[keep]
    if len(a) == 0:
        return {"pairs": 0, "reason": "no pair of two different persons among the test samples"}
    edits = {"B itself": lambda xa, xb: xb, "reconstruction of B": lambda xa, xb: model.reconstruct(xb)}
    for name in model.attributes:
        edits[f"transfer {name}"] = lambda xa, xb, k=name: model.transfer(xa, xb, [k])
        edits[f"all but {name}"] = lambda xa, xb, k=name: model.transfer(xa, xb, [k], everything_except=True)
    sums = {e: [0.0, 0.0, 0.0] for e in edits}  # closer to A, distance to A, distance to B
    for s in range(0, len(a), batch):
        xa, xb = data.images(a[s : s + batch]).to(model.device), data.images(b[s : s + batch]).to(model.device)
        da, db = reader.aligned_descriptors(xa.cpu()), reader.aligned_descriptors(xb.cpu())
        for name, edit in edits.items():
            de = reader.aligned_descriptors(edit(xa, xb).cpu())
            to_a, to_b = np.linalg.norm(de - da, axis=1), np.linalg.norm(de - db, axis=1)
            sums[name][0] += float((to_a < to_b).sum())
            sums[name][1] += float(to_a.sum())
            sums[name][2] += float(to_b.sum())
    m = len(a)
    return {"pairs": m, "reader": "dlib face descriptor (dlib_face_recognition_resnet_model_v1)",
            "edits": {e: {"closer_to_a": v[0] / m, "distance_to_a": v[1] / m, "distance_to_b": v[2] / m}
                      for e, v in sums.items()}}
