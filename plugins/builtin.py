"""fsx's own attributes (the paper's four) and networks, registered through the same hooks a third-party
package uses, so that nothing distinguishes a built-in from a plugin once the registry is built."""

from fsx.attributes.expression import expression
from fsx.attributes.identity import identity
from fsx.attributes.pose import pose
from fsx.attributes.style import style
from fsx.backbones.discriminators import dcgan_discriminator, mlp_latent_discriminator
from fsx.backbones.encoder import resnet18_encoder
from fsx.backbones.generator import mad_generator, resnet18_generator
from fsx.backbones.skip_generator import skip_generator
from fsx.plugins.hookspecs import hookimpl


@hookimpl
def fsx_register_attributes():
    return [pose(), identity(), expression(), style()]


@hookimpl
def fsx_register_backbones():
    return {f.__name__: f for f in (resnet18_encoder, resnet18_generator, skip_generator, mad_generator,
                                      dcgan_discriminator, mlp_latent_discriminator)}
