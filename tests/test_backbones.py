import pytest
import torch

from fsx.backbones import SUPPORTED_SIZES
from fsx.plugins import create_backbone, list_backbones


@pytest.mark.parametrize("size", SUPPORTED_SIZES)
def test_every_backbone_at_every_size(size):
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size) * 2 - 1
    E = create_backbone("resnet18_encoder", out_dim=99, image_size=size, width=0.125)
    G = create_backbone("resnet18_generator", in_dim=99, image_size=size, width=0.125)
    G_mad = create_backbone("mad_generator", in_dim=99, image_size=size, width=0.125)
    G_skip = create_backbone("skip_generator", in_dim=99, image_size=size, width=0.125, floor=8)
    D_x = create_backbone("dcgan_discriminator", image_size=size, width=0.125)
    D_z = create_backbone("mlp_latent_discriminator", in_dim=99, hidden=64)
    z = E(x)
    assert z.shape == (2, 99)
    for gen in (G, G_mad, G_skip):
        img = gen(z)
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


def test_generator_depth_and_the_authors_decoder():
    """``blocks`` sets the residual blocks per stage; ``mad_generator`` is the authors' InvResNet decoder with one
    block per stage (browatbn2/MAD, networks/invresnet.py): its parameter count and forward FLOPs at 128 px are the
    ones counted on their code (10,699,776 and 1.233 GFLOP per image), about half of fsx's generator's FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    deep, shallow = (create_backbone("resnet18_generator", image_size=64, width=0.25, blocks=b) for b in (2, 1))
    assert len(deep.blocks) == 8 and len(shallow.blocks) == 4
    mad = create_backbone("mad_generator", in_dim=99, image_size=128)
    assert sum(p.numel() for p in mad.parameters()) == 10_699_776
    flops = {}
    for name, net in (("mad", mad), ("fsx", create_backbone("resnet18_generator", in_dim=99, image_size=128, blocks=1))):
        with FlopCounterMode(display=False) as counter:
            net(torch.randn(1, 99))
        flops[name] = counter.get_total_flops()
    assert flops["mad"] == 1_233_226_752 and flops["fsx"] > 1.9 * flops["mad"]
    with pytest.raises(ValueError, match="blocks per stage"):
        create_backbone("mad_generator", blocks=0)


def test_backbone_options_reach_one_network_and_name_what_it_does_not_take():
    import fsx
    from fsx.config import AttributeSlot, ModelConfig

    slots = [AttributeSlot("a", 3)]
    cfg = ModelConfig(attributes=slots, image_size=32, width=0.25,
                      backbone_options={"image_discriminator": {"width": 0.5}, "generator": {"blocks": 1}})
    model = fsx.FaceModel(cfg)
    assert model.aae.D_x.features[0].out_channels == 32  # 64 x 0.5, not x 0.25
    assert model.aae.E.fc.in_features == 128 and len(model.aae.G.blocks) == 4  # E at 512 x 0.25
    with pytest.raises(ValueError, match=r"backbone 'resnet18_generator' takes no option\(s\) \['depth'\]"):
        fsx.FaceModel(ModelConfig(attributes=slots, image_size=32, backbone_options={"generator": {"depth": 1}}))
    with pytest.raises(ValueError, match=r"unknown network\(s\) \['gen'\]"):
        ModelConfig(attributes=slots, backbone_options={"gen": {}})
