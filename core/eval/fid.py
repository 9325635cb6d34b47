"""FID (Heusel et al. 2017) between generated and real images, with Inception-v3 weights from a local file.

fsx never downloads weights at run time. Convert torchvision's weights once where a network is available::

    import torchvision, safetensors.torch as st
    m = torchvision.models.inception_v3(weights="IMAGENET1K_V1")
    st.save_file(m.state_dict(), "inception_v3.safetensors")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsx.checkpoint import load_tensors
from fsx.eval.metrics import feature_statistics, frechet_distance

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def inception_from_file(path: str):
    """torchvision's Inception-v3 with the weights in ``path`` (safetensors) and its classifier removed."""
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    state = load_tensors(path)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: not an inception_v3 state dict ({len(missing)} tensors missing, e.g. {missing[:2]})")
    net.fc = torch.nn.Identity()
    return net.eval()


@torch.no_grad()
def inception_features(net, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 2048) pool features."""
    out = []
    for s in range(0, len(images), batch):
        x = F.interpolate(images[s : s + batch], size=(299, 299), mode="bilinear", align_corners=False)
        out.append(net((x - MEAN) / STD))
    return torch.cat(out)


@torch.no_grad()
def fid(model, data, inception_path: str, n: int = 10000, seed: int = 0, batch: int = 100) -> float:
    """FID of n samples G(z*) against n real training images."""
    net = inception_from_file(inception_path)
    g = torch.Generator().manual_seed(seed)
    real_idx = torch.randperm(len(data), generator=g)[:n]
    fake, real = [], []
    for s in range(0, len(real_idx), batch):
        real.append(inception_features(net, data.images(real_idx[s : s + batch])))
        fake.append(inception_features(net, model.generate(len(real_idx[s : s + batch]), generator=g).cpu()))
    mu_r, s_r = feature_statistics(torch.cat(real))
    mu_f, s_f = feature_statistics(torch.cat(fake))
    return frechet_distance(mu_r, s_r, mu_f, s_f)
