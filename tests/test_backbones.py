import pytest
import torch

from fsx.backbones import SUPPORTED_SIZES, create_backbone, list_backbones


@pytest.mark.parametrize("size", SUPPORTED_SIZES)
def test_every_backbone_at_every_size(size):
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size) * 2 - 1
    E = create_backbone("resnet18_encoder", out_dim=99, image_size=size, width=0.125)
    G = create_backbone("resnet18_generator", in_dim=99, image_size=size, width=0.125)
    D_x = create_backbone("dcgan_discriminator", image_size=size, width=0.125)
    D_z = create_backbone("mlp_latent_discriminator", in_dim=99, hidden=64)
    z = E(x)
    assert z.shape == (2, 99)
    img = G(z)
    assert img.shape == (2, 3, size, size)
    assert img.min() >= -1 and img.max() <= 1
    assert D_x(img).shape == (2,)
    assert D_z(z).shape == (2,)


def test_generator_uses_4x4_transposed_convs_and_width_scales():
    G = create_backbone("resnet18_generator", in_dim=99, image_size=64, width=0.25)
    deconvs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == 3 + 2  # three upsampling stages + the inverted stem
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in deconvs)
    full = sum(p.numel() for p in create_backbone("resnet18_encoder", image_size=64).parameters())
    quarter = sum(p.numel() for p in create_backbone("resnet18_encoder", image_size=64, width=0.25).parameters())
    assert 11e6 < full < 12e6  # ResNet18
    assert quarter < full / 10


def test_latent_discriminator_is_paper_shape():
    D = create_backbone("mlp_latent_discriminator", in_dim=99)
    linears = [m for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [1000, 1000, 1000, 1]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in D.modules()) == 3
    assert all(m.p == 0.2 for m in D.modules() if isinstance(m, torch.nn.Dropout))


def test_registry_errors_name_known_backbones():
    assert "resnet18_encoder" in list_backbones()
    with pytest.raises(KeyError, match="known:.*resnet18_encoder"):
        create_backbone("resnet999")
    with pytest.raises(ValueError, match="image_size"):
        create_backbone("resnet18_generator", image_size=100)
