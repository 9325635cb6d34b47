import pytest
import torch

import fsx
from conftest import tiny_config
from fsx.model import from_net


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return fsx.FaceModel(tiny_config()).eval()


def test_encode_returns_every_sub_vector_and_z(model):
    x = torch.rand(3, 3, 32, 32)
    out = model.encode(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "pose": (3, 3), "identity": (3, 32), "expression": (3, 32), "style": (3, 32), "z": (3, 99)
    }
    assert model.attributes == {"pose": 3, "identity": 32, "expression": 32, "style": 32}


def test_decode_accepts_dict_or_tensor_and_returns_unit_range_images(model):
    with torch.no_grad():
        feats = model.encode(torch.rand(2, 3, 32, 32))
        a = model.decode(feats)
        b = model.decode(torch.cat([feats[k] for k in model.attributes], 1))
    assert a.shape == (2, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b)


def test_transfer_swaps_exactly_the_named_sub_vectors(model):
    src, tgt = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _, fs = model.encode_features(src)
        _, ft = model.encode_features(tgt)
        out = model.transfer(src, tgt, ["expression"])
        sl = model.layout.slices["expression"]
        expected = ft.clone()
        expected[:, sl] = fs[:, sl]
        torch.testing.assert_close(out, model.decode(expected))
        # "everything except expression" = the source with the target's expression
        out2 = model.transfer(src, tgt, "expression", everything_except=True)
        expected2 = fs.expand_as(ft).clone()
        expected2[:, sl] = ft[:, sl]
        torch.testing.assert_close(out2, model.decode(expected2))


def test_residual_transfer_keeps_what_the_embedding_does_not_return(model):
    src, tgt = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z_s, f_s = model.encode_features(src)
        z_t, f_t = model.encode_features(tgt)
        sl, inv = model.layout.slices["expression"], model.disentangler.phi_inv
        assert (inv(f_t) - z_t).abs().max() > 1e-2  # the embedding does not return z: there is a residual
        # a face transferred onto itself comes back as the autoencoder draws it, not as the embedding does
        same = model.transfer(tgt, tgt, ["expression"], residual="full")
        torch.testing.assert_close(same, model.autoencode(tgt), atol=1e-5, rtol=0)
        edited = f_t.clone()
        edited[:, sl] = f_s[:, sl]
        out = model.transfer(src, tgt, ["expression"], residual="full")
        torch.testing.assert_close(out, from_net(model.aae.G(inv(edited) + z_t - inv(f_t))))
        # with everything_except the edit stays on the source: its residual, not the target's
        kept = f_s.expand_as(f_t).clone()
        kept[:, sl] = f_t[:, sl]
        out2 = model.transfer(src, tgt, ["expression"], everything_except=True, residual="full")
        z_base, f_base = z_s.expand_as(z_t), f_s.expand_as(f_t)
        torch.testing.assert_close(out2, from_net(model.aae.G(inv(kept) + z_base - inv(f_base))))


def test_projected_residual_drops_what_the_edited_sub_vectors_could_make(model):
    src, tgt = torch.rand(1, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        z_t, f_t = model.encode_features(tgt)
        f_s = model.encode_features(src)[1]
    inv, sl = model.disentangler.phi_inv, model.layout.slices["expression"]
    r = (z_t - inv(f_t)).detach()
    # d Phi^-1 / d f_expression at each target's f, by plain autograd (one face at a time)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda f: inv(f[None])[0], f)[:, sl] for f in f_t])
    coef = torch.linalg.pinv(jac) @ r.unsqueeze(-1)
    kept = r - (jac @ coef).squeeze(-1)
    # what is left of the residual has no component a change of expression could make ...
    assert (jac.transpose(1, 2) @ kept.unsqueeze(-1)).abs().max() < 1e-4 * r.abs().max()
    assert (kept - r).abs().max() > 1e-4  # ... and the projection removed something
    edited = f_t.clone()
    edited[:, sl] = f_s[:, sl]
    with torch.no_grad():
        out = model.transfer(src, tgt, ["expression"], residual="projected")
        torch.testing.assert_close(out, from_net(model.aae.G(inv(edited) + kept)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="residual must be"):
        model.transfer(src, tgt, ["expression"], residual=True)


def test_a_flow_disentangler_inverts_phi_exactly_and_stores_its_weights_once(tmp_path):
    torch.manual_seed(0)
    model = fsx.FaceModel(tiny_config(disentangler="flow")).eval()
    dis = model.disentangler
    with torch.no_grad():  # off its start: random rotations, scales and couplings that are no longer the identity
        for p in dis.parameters():
            p.add_(0.1 * torch.randn_like(p))
    z = 2 * torch.randn(64, 99)
    f = dis.phi(z)
    assert (f - z).abs().mean() > 0.5 and (f.std(0) / z.std(0)).max() > 1.2  # a map that is not a rotation
    torch.testing.assert_close(dis.phi_inv(f), z, atol=1e-4, rtol=0)
    params = [n for n, _ in model.named_parameters() if n.startswith("disentangler.")]
    assert params and not [n for n in params if n.startswith("disentangler.phi_inv")]  # Phi^-1 has none of its own
    fsx.save_model(model, tmp_path / "flow.safetensors")
    back = fsx.load(tmp_path / "flow.safetensors")
    assert back.config.disentangler == "flow"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back.disentangler.phi(z), f)
        # the embedding decodes as the autoencoder does, so the residual edit is the paper's edit
        torch.testing.assert_close(back.decode(back.encode(x)), back.autoencode(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(back.transfer(x[:1], x, ["expression"], residual="full"),
                                   back.transfer(x[:1], x, ["expression"]), atol=1e-5, rtol=0)
    assert fsx.FaceModel(tiny_config()).config.disentangler == "mlp"  # the paper's two MLPs stay the default


def test_a_flow_disentangler_needs_z_and_f_of_one_size():
    with pytest.raises(ValueError, match=r"disentangler=flow needs z and f of one size, got z 64 and f 99"):
        fsx.FaceModel(tiny_config(disentangler="flow", latent_dim=64))
    with pytest.raises(ValueError, match="disentangler"):
        tiny_config(disentangler="glow")


def test_generate_is_seeded(model):
    with torch.no_grad():
        a = model.generate(2, generator=torch.Generator().manual_seed(1))
        b = model.generate(2, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 3, 32, 32)
    torch.testing.assert_close(a, b)


def test_a_loaded_model_computes_in_channels_last_and_returns_pictures_in_the_default_layout(tmp_path):
    """A FaceModel (a loaded one included) holds its convolutions in channels_last, as fsx trains; its pictures come
    back in torch's default layout (``.view`` works on them) and equal an NCHW copy's up to float rounding."""
    torch.manual_seed(0)
    model = fsx.FaceModel(tiny_config()).eval()
    fsx.save_model(model, tmp_path / "m.safetensors")
    loaded = fsx.load(tmp_path / "m.safetensors")
    convs = [m.weight for m in loaded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # the layout differs from NCHW's for these shapes
    nchw = fsx.load(tmp_path / "m.safetensors").to(memory_format=torch.contiguous_format)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for name, out, ref in [("autoencode", loaded.autoencode(x), nchw.autoencode(x)),
                               ("reconstruct", loaded.reconstruct(x), nchw.reconstruct(x)),
                               ("generate", loaded.generate(2, generator=torch.Generator().manual_seed(2)),
                                nchw.generate(2, generator=torch.Generator().manual_seed(2)))]:
            assert out.is_contiguous() and out.view(2, -1).shape == (2, 3 * 32 * 32), name
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5, msg=name)


def test_fit_codes_fits_the_codes_mean_and_covariance_and_generate_draws_from_it():
    """A fresh model's code Gaussian is the prior (both priors give the same faces); after ``fit_codes`` on codes of
    known moments, ``sample_codes`` draws with those moments and ``generate`` ("codes", the default) from them, while
    ``prior="standard"`` still draws N(0, I)."""
    torch.manual_seed(0)
    model = fsx.FaceModel(tiny_config()).eval()
    d = model.aae.z_dim
    with torch.no_grad():
        g = lambda: torch.Generator().manual_seed(3)
        torch.testing.assert_close(model.generate(4, generator=g()), model.generate(4, generator=g(), prior="standard"))
        mixing = torch.randn(d, d) * 0.1
        codes = torch.randn(20000, d) @ mixing.T + torch.linspace(-1, 1, d)
        model.aae.fit_codes(codes)
        torch.testing.assert_close(model.aae.code_mean, codes.mean(0), rtol=0, atol=1e-5)
        scale = model.aae.code_scale
        torch.testing.assert_close(scale @ scale.T, torch.cov(codes.T.double()).float(), rtol=0, atol=1e-5)
        z = model.aae.sample_codes(20000, generator=g())
        # sampling error over 20,000 draws: ~0.007 per mean, ~0.01 per covariance entry (entries of ~1)
        assert (z.mean(0) - codes.mean(0)).abs().max() < 0.04
        assert (torch.cov(z.T) - mixing @ mixing.T).abs().max() < 0.06
        assert not torch.allclose(model.generate(4, generator=g()), model.generate(4, generator=g(), prior="standard"))
        torch.testing.assert_close(model.generate(4, generator=g()),
                                   from_net(model.aae.G(model.aae.sample_codes(4, generator=g()))))
    with pytest.raises(ValueError, match="prior must be one of"):
        model.generate(1, prior="uniform")
    with pytest.raises(ValueError, match=r"fit_codes: need codes of shape \(N >= 2, 99\)"):
        model.aae.fit_codes(torch.randn(10, 3))


def test_a_checkpoint_without_the_code_gaussian_loads_with_the_prior_in_its_place(tmp_path):
    """Model files written before the code Gaussian existed (no ``aae.code_mean`` / ``aae.code_scale``) still load:
    generate then draws from N(0, I), as those models did. Any other missing tensor is still refused."""
    from fsx.checkpoint import CheckpointError, load_tensors, read_metadata, save_tensors

    torch.manual_seed(0)
    model = fsx.FaceModel(tiny_config()).eval()
    model.aae.fit_codes(torch.randn(100, model.aae.z_dim) * 0.3)
    path = tmp_path / "m.safetensors"
    fsx.save_model(model, path)
    old = {k: v for k, v in load_tensors(path).items() if not k.startswith("aae.code_")}
    save_tensors(tmp_path / "old.safetensors", old, read_metadata(path))
    loaded = fsx.load(tmp_path / "old.safetensors")
    torch.testing.assert_close(loaded.aae.code_mean, torch.zeros(model.aae.z_dim))
    torch.testing.assert_close(loaded.aae.code_scale, torch.eye(model.aae.z_dim))
    torch.testing.assert_close(fsx.load(path).aae.code_scale, model.aae.code_scale)
    del old["aae.E.fc.weight" if "aae.E.fc.weight" in old else next(k for k in old if k.startswith("aae.E."))]
    save_tensors(tmp_path / "broken.safetensors", old, read_metadata(path))
    with pytest.raises(CheckpointError, match="1 missing"):
        fsx.load(tmp_path / "broken.safetensors")


def test_bad_images_get_clear_errors(model):
    with pytest.raises(ValueError, match="32x32"):
        model.encode(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model.encode(torch.rand(3, 32, 32))
    with pytest.raises(KeyError, match="not in this model"):
        model.transfer(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), ["age"])


def test_layout_follows_the_attribute_order_given():
    m = fsx.FaceModel(tiny_config(attributes="expr,pose"))
    assert list(m.attributes) == ["expression", "pose"]
    assert m.layout.slices["pose"] == slice(32, 35)
    assert m.config.z_dim == 35
