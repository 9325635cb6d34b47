"""Named networks: ``create_backbone("resnet18_encoder", out_dim=99, image_size=64, width=0.25)``."""

from fsx.backbones.discriminators import DCGANDiscriminator, LatentDiscriminator
from fsx.backbones.generator import InvertedResNet18
from fsx.backbones.registry import SUPPORTED_SIZES, create_backbone, list_backbones

__all__ = [
    "SUPPORTED_SIZES",
    "DCGANDiscriminator",
    "InvertedResNet18",
    "LatentDiscriminator",
    "create_backbone",
    "list_backbones",
]
