"""E: a ResNet18 (from timm) that maps an image in [-1, 1] to the latent code z."""

from __future__ import annotations

import torch.nn as nn

from fsx.sizes import check_size, scaled


def resnet18_encoder(out_dim: int = 99, image_size: int = 128, width: float = 1.0, pretrained: bool = False) -> nn.Module:
    """timm's ResNet18 with its classifier sized to ``out_dim``; ``width`` scales every stage's channels.

    ``pretrained=True`` loads timm's ImageNet weights (full width only; needs them cached or a network).
    """
    import timm  # imported here: it takes seconds, and most commands never build an encoder

    check_size(image_size)
    if pretrained and width != 1.0:
        raise ValueError("pretrained ResNet18 weights exist only for width 1.0")
    channels = tuple(scaled(c, width) for c in (64, 128, 256, 512))
    return timm.create_model(
        "resnet18", pretrained=pretrained, num_classes=out_dim, channels=channels, stem_width=channels[0]
    )
