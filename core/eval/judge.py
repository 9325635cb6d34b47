"""An independent judge of SynthFaces images: a small CNN trained on the renders' exact factors, never on fsx's
networks nor with fsx's losses, that reads pose, expression, identity and style from any picture, real or
generated. It tells whether a decoded face or an edit *shows* an attribute, where fsx's own probes only say that
the embedding encodes it.

Trained on the SynthFaces train persons with every picture blurred by a random amount half the time, so that it
judges content rather than sharpness (decoders blur): ``fsx.eval.judge_build`` makes the shipped weights
(``judge.safetensors`` beside this file).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = Path(__file__).with_name("judge.safetensors")
SIZE = 64  # the judge reads every picture at 64 px
STYLE = ("bg_r", "bg_g", "bg_b", "light_x", "light_y", "temperature")  # style factors it regresses
CLASSES = ("glasses", "hat")  # style factors it classifies
POSE_SCALE = 30.0  # degrees per output unit
ID_DIM = 64


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Judge(nn.Module):
    """64 px picture -> pose (degrees), expression category logits and valence/arousal, a unit identity
    embedding, style factors and glasses/hat logits."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1),
            _block(4 * w, 4 * w, 2), nn.Flatten(),  # 4 x 4 positions kept: pose is where things are
        )
        self.trunk = nn.Sequential(nn.Linear(4 * w * 16, 256), nn.ReLU(inplace=True))
        self.pose = nn.Linear(256, 3)
        self.category = nn.Linear(256, 8)
        self.va = nn.Linear(256, 2)
        self.identity = nn.Linear(256, ID_DIM)
        self.style = nn.Linear(256, len(STYLE))
        self.classes = nn.Linear(256, len(CLASSES))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (N, 3, H, W) in [0, 1], any size (resized to 64 px)."""
        if images.shape[-1] != SIZE or images.shape[-2] != SIZE:
            images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        h = self.trunk(self.features(images * 2 - 1))
        return {"pose": self.pose(h) * POSE_SCALE, "category": self.category(h), "va": self.va(h),
                "identity": F.normalize(self.identity(h), dim=1), "style": self.style(h), "classes": self.classes(h)}


def load_judge(path: str | Path = WEIGHTS) -> Judge:
    """The shipped judge (safetensors, no pickle), in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no judge weights; build them with python -m fsx.eval.judge_build")
    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata().get("judge", "{}"))
    judge = Judge(width=meta.get("width", 32))
    judge.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return judge.eval()



@torch.no_grad()
def read(judge: Judge, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    """The judge's outputs for (N, 3, H, W) pictures in [0, 1], in batches, on the CPU."""
    parts = [judge(images[s : s + batch].float().cpu()) for s in range(0, len(images), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

