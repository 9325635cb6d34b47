"""skip_generator: channels where the parts are drawn, nearest upsampling, no normalisation, an image per scale."""

import pytest
import torch
import torch.nn as nn

from fsx.plugins import create_backbone
from fsx.backbones.skip_generator import stage_channels


def test_channels_have_a_floor_at_the_fine_scales_and_the_width_scales_the_coarse_ones():
    assert [stage_channels(r, 0.25, 32) for r in (4, 8, 16, 32, 64, 128)] == [128, 128, 128, 64, 32, 32]
    assert [stage_channels(r, 1.0, 32) for r in (4, 8, 16, 32, 64, 128)] == [512, 512, 512, 256, 128, 64]
    G = create_backbone("skip_generator", in_dim=99, image_size=64, width=0.25, floor=32)
    convs = [m for m in G.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs[-1].out_channels == 32  # resnet18_generator at width 0.25 has 8 at 64 px


def test_coarse_sets_the_coarse_scales_channels_apart_from_the_fine_ones():
    # the demo's G (width 0.125, floor 16) with twice its channels where the face's shape is placed
    assert [stage_channels(r, 0.125, 16) for r in (4, 8, 16, 32, 64)] == [64, 64, 64, 32, 16]
    assert [stage_channels(r, 0.125, 16, coarse=128) for r in (4, 8, 16, 32, 64)] == [128, 128, 64, 32, 16]
    G = create_backbone("skip_generator", in_dim=99, image_size=64, width=0.125, floor=16, coarse=128)
    assert [rgb.in_channels for rgb in G.to_rgb] == [128, 128, 64, 32, 16]
    assert G(torch.randn(2, 99)).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="coarse"):
        create_backbone("skip_generator", in_dim=99, image_size=64, coarse=-1)


def test_no_transposed_convolution_and_no_normalisation():
    G = create_backbone("skip_generator", in_dim=99, image_size=64)
    assert not [m for m in G.modules() if isinstance(m, (nn.ConvTranspose2d, nn.modules.batchnorm._BatchNorm,
                                                         nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm))]


@pytest.mark.parametrize("size", [32, 64, 128])
def test_pyramid_has_an_image_per_scale_and_ends_in_forward(size):
    torch.manual_seed(0)
    G = create_backbone("skip_generator", in_dim=20, image_size=size, width=0.125, floor=8)
    z = torch.randn(3, 20)
    scales = G.pyramid(z)
    assert [s.shape[-1] for s in scales] == [4 * 2**i for i in range(len(scales))]
    assert scales[-1].shape == (3, 3, size, size)
    assert all(s.abs().max() <= 1 for s in scales)
    torch.testing.assert_close(G(z), scales[-1])


def test_each_scale_adds_to_the_upsampled_coarser_image():
    """The skip architecture: before the final tanh, scale k's image is scale k-1's upsampled plus its own RGB."""
    torch.manual_seed(0)
    G = create_backbone("skip_generator", in_dim=8, image_size=32, width=0.125, floor=8)
    with torch.no_grad():
        for rgb in G.to_rgb[1:]:  # silence every finer RGB output: each scale then repeats the 4x4 one
            rgb.weight.zero_()
            rgb.bias.zero_()
    scales = G.pyramid(torch.randn(2, 8))
    coarse = scales[0]
    for s in scales[1:]:
        torch.testing.assert_close(s, coarse.repeat_interleave(s.shape[-1] // 4, -1).repeat_interleave(
            s.shape[-1] // 4, -2))


def test_the_network_learns_one_picture():
    """A smoke test of trainability without normalisation: 150 Adam steps fit one 32 px picture closely."""
    torch.manual_seed(0)
    G = create_backbone("skip_generator", in_dim=8, image_size=32, width=0.125, floor=8)
    z, target = torch.randn(1, 8), torch.rand(1, 3, 32, 32) * 1.6 - 0.8
    opt = torch.optim.Adam(G.parameters(), 2e-3)
    first = None
    for _ in range(150):
        loss = (G(z) - target).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 5
