"""fsx's networks (encoder, generators, discriminators) and the registry that names them; a model builds its
networks through ``fsx.plugins.create_backbone``, which reads the registry every plugin fills."""

from fsx.backbones.discriminators import DCGANDiscriminator, LatentDiscriminator
from fsx.backbones.generator import InvertedResNet18
from fsx.backbones.registry import BackboneRegistry
from fsx.sizes import SUPPORTED_SIZES

__all__ = [
    "SUPPORTED_SIZES",
    "BackboneRegistry",
    "DCGANDiscriminator",
    "InvertedResNet18",
    "LatentDiscriminator",
]
