"""MTCNN's output network (ONet) as a plain ``nn.Module``, read from safetensors: a small face network that works
offline, for the perceptual reconstruction term (``loss.rec_perceptual_net=onet``, :mod:`fsx.perceptual`).

ONet (Zhang et al., 2016, "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks") is
the last stage of MTCNN: a 48 x 48 face crop in, whether it is a face, its box and five landmarks (eyes, nose,
mouth corners) out. Its features are trained to find exactly the parts a decoder leaves out (eyes and mouths), and
it costs ~13 M multiply-adds per picture. The weights ship inside the ``facenet-pytorch`` wheel (``data/onet.pt``, a
plain state dict); install it without its pins (``pip install --no-deps facenet-pytorch``: it pins torch < 2.3) and
run ``python -m fsx.onet`` once: that file is read that one time (``torch.load(weights_only=True)``, which unpickles
tensors only) and written to ``onet.safetensors``; from then on fsx reads only safetensors. The package itself is
never imported (it needs ``requests`` at import).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsx.checkpoint import atomic_write_bytes, load_tensors

SIZE = 48  # ONet's input, pixels a side, RGB in [-1, 1] ((x - 127.5) / 128 on 8-bit pictures)


def default_path() -> Path:
    """Where the converted weights live: $FSX_CACHE/onet.safetensors (default ~/.cache/fsx)."""
    return Path(os.environ.get("FSX_CACHE", Path.home() / ".cache" / "fsx")) / "onet.safetensors"


class ONet(nn.Module):
    """Four convolutions with PReLU (the first three max-pooled), a 256-unit layer, three heads. The layer names
    are facenet-pytorch's, so its state dict loads as it is."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)  # face / not a face (logits)
        self.dense6_2 = nn.Linear(256, 4)  # box offsets
        self.dense6_3 = nn.Linear(256, 10)  # five landmarks: x1..x5, y1..y5, in the crop's [0, 1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations of each layer before it is pooled: (N, 32, 46, 46), (N, 64, 21, 21), (N, 64, 8, 8),
        (N, 128, 3, 3) and (N, 256) for a (N, 3, 48, 48) input."""
        c1 = self.prelu1(self.conv1(x))
        c2 = self.prelu2(self.conv2(F.max_pool2d(c1, 3, 2, ceil_mode=True)))
        c3 = self.prelu3(self.conv3(F.max_pool2d(c2, 3, 2, ceil_mode=True)))
        c4 = self.prelu4(self.conv4(F.max_pool2d(c3, 2, 2, ceil_mode=True)))
        # the Caffe original flattens (W, H, C); the dense layer's weights expect that order
        d5 = self.prelu5(self.dense5(c4.permute(0, 3, 2, 1).flatten(1)))
        return [c1, c2, c3, c4, d5]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(face probability (N,), box (N, 4), landmarks (N, 10)) for (N, 3, 48, 48) crops in [-1, 1]."""
        d5 = self.features(x)[-1]
        return self.dense6_1(d5).softmax(1)[:, 1], self.dense6_2(d5), self.dense6_3(d5)


def load_onet(path: str | os.PathLike | None = None) -> ONet:
    """ONet from its safetensors file (default: :func:`default_path`), in eval mode, its parameters frozen."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ONet weights; pip install --no-deps facenet-pytorch, then run "
                                f"python -m fsx.onet once to convert them")
    net = ONet()
    missing, unexpected = net.load_state_dict(load_tensors(str(path)), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not MTCNN's ONet ({len(missing)} tensors missing, e.g. {missing[:2]}; "
                         f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    return net.eval().requires_grad_(False)


def state_dict_file() -> Path:
    """facenet-pytorch's ``data/onet.pt``, found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("ONet's weights come from the package facenet-pytorch: pip install --no-deps "
                                "facenet-pytorch, then run python -m fsx.onet")
    return Path(spec.origin).parent / "data" / "onet.pt"


def convert(out: str | os.PathLike | None = None, source: str | os.PathLike | None = None) -> Path:
    """Write facenet-pytorch's ONet state dict to safetensors (the one time that file is read)."""
    from safetensors.torch import save

    source = Path(source) if source is not None else state_dict_file()
    out = Path(out) if out is not None else default_path()
    state = torch.load(str(source), map_location="cpu", weights_only=True)
    state = {k: v.detach().contiguous() for k, v in state.items()}
    ONet().load_state_dict(state, strict=True)  # the names and shapes match the plain module
    atomic_write_bytes(out, save(state, metadata={"source": "facenet-pytorch data/onet.pt (MTCNN's ONet)"}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Convert facenet-pytorch's MTCNN ONet to safetensors, once.")
    ap.add_argument("--out", default=None, help=f"default: {default_path()}")
    args = ap.parse_args()
    print(f"wrote {convert(args.out)}")


if __name__ == "__main__":
    main()
