"""The Gaussian ``generate`` draws from: fitted to E's codes of training pictures at the end of every stage that
trains E, the same on every call for one seed, and written into the stage's and the run's model files."""

import torch

import fsx
from fsx.data.synthfaces import SynthStream
from fsx.train import make_config, train
from fsx.train.code_prior import fit_code_prior
from fsx.train.setup import build_run


def test_each_stage_that_trains_e_leaves_the_gaussian_of_its_own_codes(tmp_path):
    cfg = make_config("tiny")
    train(cfg, tmp_path, progress=False)
    sources = build_run(cfg).sources
    for stage in ("aae", "joint"):
        saved = fsx.load(tmp_path / f"{stage}.safetensors")
        again = fsx.load(tmp_path / f"{stage}.safetensors")
        assert fit_code_prior(again, sources, cfg.seed) == len(sources[0]) == 384  # fewer than 4096: each once
        assert float(saved.aae.code_mean.abs().max()) > 0, stage  # no longer the prior's 0 and I
        torch.testing.assert_close(saved.aae.code_mean, again.aae.code_mean, rtol=0, atol=1e-6)
        torch.testing.assert_close(saved.aae.code_scale, again.aae.code_scale, rtol=0, atol=1e-6)
    # refit trains Phi only: the run's model keeps the joint stage's Gaussian
    joint, final = fsx.load(tmp_path / "joint.safetensors"), fsx.load(tmp_path / "model.safetensors")
    torch.testing.assert_close(final.aae.code_scale, joint.aae.code_scale, rtol=0, atol=0)
    aae = fsx.load(tmp_path / "aae.safetensors")
    assert not torch.allclose(aae.aae.code_scale, joint.aae.code_scale)


def test_a_stream_gives_each_batch_other_persons_and_one_seed_the_same_pictures():
    """On a stream of rendered persons, batch k is generation k's persons (as training step k reads them); a fixed
    seed encodes the same pictures every time, another seed others."""
    torch.manual_seed(0)
    model = fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625, latent_disc_hidden=32, phi_hidden=32)
    stream = SynthStream(image_size=32, persons=8, clips_per_person=4, frames_per_clip=4, seed=0)  # 128 a step
    seen = []
    stream_get = stream.get_batch
    stream.get_batch = lambda idx: seen.append(sorted({int(i) // len(stream) for i in idx})) or stream_get(idx)
    assert fit_code_prior(model, [stream], seed=0, pictures=96, batch=32) == 96
    assert seen == [[0], [1], [2]]
    first = model.aae.code_scale.clone()
    fit_code_prior(model, [stream], seed=0, pictures=96, batch=32)
    torch.testing.assert_close(model.aae.code_scale, first, rtol=0, atol=0)
    fit_code_prior(model, [stream], seed=1, pictures=96, batch=32)
    assert not torch.allclose(model.aae.code_scale, first)
    assert model.training  # left in the mode it was found in


def test_fsx_generate_draws_from_the_fitted_gaussian_unless_told_standard(tmp_path):
    """``fsx generate --prior codes`` (the default) writes what ``model.generate`` draws from the fitted Gaussian,
    ``--prior standard`` what it draws from N(0, I)."""
    import numpy as np
    from PIL import Image

    from conftest import run_fsx, tiny_config

    torch.manual_seed(0)
    model = fsx.FaceModel(tiny_config()).eval()
    with torch.no_grad():  # an untrained G's pictures barely depend on z: its input layer x100 makes them
        next(p for p in model.aae.G.parameters() if p.dim() >= 2).mul_(100)
    model.aae.fit_codes(torch.randn(500, model.aae.z_dim) * 0.3 + 0.5)
    fsx.save_model(model, tmp_path / "m.safetensors")
    firsts = {}
    for prior in (None, "standard"):
        out = tmp_path / f"{prior}.png"
        p = run_fsx("generate", tmp_path / "m.safetensors", "-n", "4", "--seed", "2", "--out", out,
                    *(["--prior", prior] if prior else []))
        assert p.returncode == 0, p.stderr
        grid = np.asarray(Image.open(out))
        firsts[prior] = torch.from_numpy(grid[2:34, 2:34].copy()).permute(2, 0, 1).float() / 255  # padding 2
    with torch.no_grad():
        for prior, asked in ((None, "codes"), ("standard", "standard")):
            want = model.generate(4, generator=torch.Generator().manual_seed(2), prior=asked)[0]
            assert (firsts[prior] - want).abs().max() < 1 / 255 + 1e-6, prior
    assert (firsts[None] - firsts["standard"]).abs().max() > 0.03  # ~8 of the PNG's steps: the flag is read
    p = run_fsx("generate", tmp_path / "m.safetensors", "--prior", "uniform", "--out", tmp_path / "u.png")
    assert p.returncode == 2 and "uniform" in p.stderr
