"""Evaluation metrics on constructed embeddings whose answers are known."""

import math

import pytest
import torch

from conftest import random_inception

from fsx.eval.metrics import (dci, feature_statistics, frechet_distance, latent_vs_prior, mig, roc_auc,
                              verification_accuracy)
from fsx.eval.probes import classification_auc, cosine_scores, ridge_fit_predict, sample_pairs


def test_verification_perfect_random_and_inverted():
    g = torch.Generator().manual_seed(0)
    same = torch.rand(600, generator=g) < 0.5
    assert verification_accuracy(same.float() + 0.01 * torch.rand(600, generator=g), same) == 1.0
    rand = verification_accuracy(torch.rand(600, generator=g), same)
    assert 0.4 < rand < 0.6
    # a score that is informative 80% of the time gives about 80%
    noisy = torch.where(torch.rand(600, generator=g) < 0.8, same.float(), 1 - same.float())
    assert abs(verification_accuracy(noisy, same) - 0.8) < 0.06


def test_verification_on_embeddings_separable_vs_leaking():
    g = torch.Generator().manual_seed(1)
    person = torch.arange(400) // 4
    centres = torch.randn(100, 16, generator=g)
    separable = centres[person] + 0.05 * torch.randn(400, 16, generator=g)
    random = torch.randn(400, 16, generator=g)
    leaking = 0.5 * centres[person] + torch.randn(400, 16, generator=g)
    i, j, s = sample_pairs(person, 2000)
    assert s.float().mean() == 0.5
    acc = {n: verification_accuracy(cosine_scores(x, i, j), s) for n, x in
           [("separable", separable), ("random", random), ("leaking", leaking)]}
    assert acc["separable"] > 0.99 and 0.4 < acc["random"] < 0.6 and 0.6 < acc["leaking"] < 0.95


def test_pairs_within_and_across():
    person = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    clip = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    i, j, same = sample_pairs(clip, 40, within=person)
    assert torch.all(person[i] == person[j])  # style: negatives are other clips of the same person
    i, j, same = sample_pairs(person, 40, across=clip)
    assert torch.all(clip[i] != clip[j])


def test_roc_auc_known_values():
    assert roc_auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1])) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.8, 0.2, 0.1]), torch.tensor([0, 0, 1, 1])) == 0.0
    # one positive ranked above one of two negatives: 1/2; ties count half
    assert roc_auc(torch.tensor([0.5, 0.2, 0.9]), torch.tensor([1, 0, 0])) == pytest.approx(0.5)
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(torch.tensor([0.5]), torch.tensor([1])))


def test_classification_probe_auc_separable_vs_random():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(8, (1600,), generator=g)
    centres = torch.randn(8, 12, generator=g) * 3
    x = centres[y] + torch.randn(1600, 12, generator=g)
    good = classification_auc(x[:1200], y[:1200], x[1200:], y[1200:], 8)
    bad = classification_auc(torch.randn(1600, 12, generator=g)[:1200], y[:1200], torch.randn(400, 12, generator=g), y[1200:], 8)
    assert good["average"] > 0.97 and 0.4 < bad["average"] < 0.6


def test_ridge_mae_known():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 5, generator=g)
    y = x @ torch.tensor([[1.0], [2.0], [0.0], [0.0], [-1.0]]) + 3
    pred = ridge_fit_predict(x[:400], y[:400], x[400:], alpha=1e-8)
    assert (pred - y[400:]).abs().max() < 1e-3


def test_frechet_distance_against_direct_computation():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64)
    b = torch.randn(500, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    # direct: the symmetric square root of s1 by eigen-decomposition, then Tr(sqrt(sqrt(s1) s2 sqrt(s1)))
    w, v = torch.linalg.eigh(s1)
    r1 = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    w2, _ = torch.linalg.eigh(r1 @ s2 @ r1)
    direct = float((mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * w2.clamp(min=0).sqrt().sum())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    # two 1-d Gaussians: (m1 - m2)^2 + (sd1 - sd2)^2
    assert frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[1.0]])) == pytest.approx(4 + 1)


def test_mig_and_dci_disentangled_vs_entangled():
    g = torch.Generator().manual_seed(0)
    factors = torch.rand(3000, 3, generator=g)
    disentangled = torch.cat([factors, 0.01 * torch.randn(3000, 2, generator=g)], 1)  # one code per factor
    mix = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.5], [0.5, 1.0, -1.0]])
    entangled = factors @ mix
    random = torch.randn(3000, 5, generator=g)
    m_good, m_bad, m_rand = mig(disentangled, factors), mig(entangled, factors), mig(random, factors)
    assert m_good > 0.5 and m_bad < 0.3 and m_rand < 0.05
    d_good, d_bad = dci(disentangled, factors), dci(entangled, factors)
    assert d_good["disentanglement"] > 0.9 and d_good["completeness"] > 0.9
    assert d_bad["disentanglement"] < 0.6
    assert d_good["informativeness"] > 0.99 and dci(random, factors)["informativeness"] < 0.05


def test_mean_absolute_error_per_column():
    from fsx.eval.metrics import mean_absolute_error

    pred = torch.tensor([[1.0, 10.0], [3.0, 10.0]])
    target = torch.tensor([[2.0, 0.0], [1.0, 20.0]])
    assert mean_absolute_error(pred, target).tolist() == [1.5, 10.0]


def test_latent_vs_prior_is_near_zero_for_prior_samples_and_sees_an_offset():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 8, generator=g)
    near = latent_vs_prior(z)
    assert near["frechet_to_prior"] < 0.02 and near["rms_norm"] == pytest.approx(math.sqrt(8), rel=0.01)
    assert near["prior_rms_norm"] == pytest.approx(math.sqrt(8)) and near["mean_std"] == pytest.approx(1, abs=0.02)
    off = latent_vs_prior(0.5 * z + 3.0)  # mean 3, std 0.5: ||mu||^2 = 72, trace term 8 * (0.5 - 1)^2 = 2
    assert off["frechet_to_prior"] == pytest.approx(74.0, rel=0.01) and off["mean_abs_mean"] == pytest.approx(3, abs=0.02)


def test_mig_keeps_binary_factors_as_two_classes_and_ignores_sample_order():
    """Binary factors (glasses, hat) once went into 20 equal-count bins split by sample order: entropy 3.00 nats
    instead of 0.61, and a mutual information that measured the order of the rows."""
    from fsx.eval.synthetic import _rank_bins

    g = torch.Generator().manual_seed(0)
    glasses = (torch.rand(2000, generator=g) < 0.3).float()
    binned = _rank_bins(glasses[:, None])
    assert binned.unique().tolist() == [0, 1]
    p = glasses.double().mean().item()
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    counts = binned[:, 0].bincount().double() / len(binned)
    assert abs(float(-(counts * counts.log()).sum()) - entropy) < 1e-9
    codes = torch.cat([glasses[:, None] + 0.01 * torch.randn(2000, 1, generator=g), torch.randn(2000, 3, generator=g)], 1)
    perm = torch.randperm(2000, generator=g)
    assert mig(codes, binned) == pytest.approx(mig(codes[perm], binned[perm]), abs=1e-9)
    assert mig(codes, binned) > 0.9
    continuous = torch.tensor([0.0] * 500 + [1.0] * 500 + list(torch.rand(1000, generator=g).tolist()))[:, None]
    bins = _rank_bins(continuous)  # ties of a continuous factor share one bin
    assert len(bins[:500].unique()) == 1 and len(bins[500:1000].unique()) == 1


def test_dci_informativeness_is_held_out_and_completeness_weighted_by_importance():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(80, 40, generator=g)  # 40 codes, 80 samples: an in-sample fit explains noise
    target = torch.randn(80, 1, generator=g)
    assert dci(noise, target)["informativeness"] < 0.1
    f0 = torch.randn(5000, 1, generator=g)
    codes = torch.cat([f0, torch.randn(5000, 9, generator=g)], 1)
    factors = torch.cat([f0, torch.randn(5000, 1, generator=g)], 1)  # f1: no code carries it (tiny, diffuse weights)
    d = dci(codes, factors)
    assert d["completeness"] > 0.8  # the unweighted mean over both factors was about 0.5
    assert d["informativeness"] == pytest.approx(0.5, abs=0.05)  # f0 fully, f1 not at all


def test_verification_gets_the_pairs_it_asks_for_when_positives_are_rare():
    """SynthFaces' test split: 100 persons x 4 clips x 16 frames; identity pairs must come from two clips. Random
    pairs once gave 1,778 of the 6,000 asked for (identity) and 604 (style)."""
    person = torch.arange(100).repeat_interleave(64)
    clip = torch.arange(400).repeat_interleave(16)
    i, j, same = sample_pairs(person, 6000, across=clip, seed=3)
    assert len(i) == 6000 and same.sum() == 3000
    assert torch.all(clip[i] != clip[j]) and torch.all((person[i] == person[j]) == same)
    i, j, same = sample_pairs(clip, 6000, within=person, seed=3)
    assert len(i) == 6000 and same.sum() == 3000
    assert torch.all(person[i] == person[j]) and torch.all((clip[i] == clip[j]) == same) and torch.all(i != j)


@pytest.mark.slow
def test_fid_is_zero_for_the_real_images_themselves_and_grows_with_a_shift(tmp_path):
    """fsx.eval.fid end to end with the FID network's architecture read from a safetensors file (random weights,
    He-initialised, stand in for the converted ones, which the FID test in test_eval_cli checks). The generator is
    replaced by one that replays the real images of the same batch (FID of a set against itself: 0) or replays
    them darkened (FID clearly above 0), so the number is checked, not only its sign."""
    from fsx.data import SynthFaces
    from fsx.eval.fid import fid

    weights = random_inception(tmp_path / "inception.safetensors")
    data = SynthFaces("test", image_size=32, persons=4, clips_per_person=2, frames_per_clip=8, cache=False)

    class Recording:  # the data set, remembering the batch fid() asked for last
        def __len__(self):
            return len(data)

        def images(self, idx):
            self.last = idx
            return data.images(idx)

    class Replay:
        device = torch.device("cpu")

        def __init__(self, source, scale):
            self.source, self.scale = source, scale

        def generate(self, n, generator=None):
            return data.images(self.source.last[:n]) * self.scale

        def autoencode(self, x):
            return x * self.scale

    source = Recording()
    same = fid(Replay(source, 1.0), source, str(weights), n=24, batch=8)
    darker = fid(Replay(source, 0.5), source, str(weights), n=24, batch=8)
    assert same["count"] == darker["count"] == 24
    assert abs(same["samples"]) < 1e-3 * darker["samples"] and darker["samples"] > 0
    assert darker["reconstructions"] > same["reconstructions"] > 0  # other pictures: never exactly the same set


def test_folding_the_fid_networks_normalisations_into_its_convolutions_keeps_its_features():
    """fsx eval's FID network folds each fixed batch normalisation into its convolution (one pass fewer over every
    activation map): with random statistics (means, variances and shifts unlike the identity), the folded network's
    features equal the unfolded one's up to float rounding, in both memory layouts, and its file is unchanged."""
    import copy

    from fsx.eval.inception import InceptionFID

    torch.manual_seed(0)
    net = InceptionFID().eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("weight"):
                torch.nn.init.kaiming_normal_(t)
            elif name.endswith("var"):
                t.uniform_(0.5, 2.0)
            else:  # beta, mean
                t.normal_(0, 0.5)
    keys = set(net.state_dict())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = net(x)
        for layout in (torch.contiguous_format, torch.channels_last):
            folded = copy.deepcopy(net).fold().to(memory_format=layout)
            assert set(folded.state_dict()) == keys  # the folded tensors are derived, never saved
            assert folded.net.layers.mixed_10.conv.folded_weight is not None  # the folded path is the one taken
            out = folded(x)
            assert torch.allclose(out, reference, rtol=1e-4, atol=1e-4 * reference.abs().max()), layout


@pytest.mark.slow
def test_fid_keeps_the_real_pictures_features_and_reads_them_back_for_the_same_pictures(tmp_path, monkeypatch):
    """The second evaluation of the same real pictures reads their features from $FSX_CACHE (the FID network
    then sees only the samples and reconstructions: 2n pictures, not 3n) and gives the same FID; other pictures
    (another size here) are computed afresh."""
    from fsx.data import SynthFaces
    from fsx.eval import fid as fid_module

    monkeypatch.setenv("FSX_CACHE", str(tmp_path / "cache"))
    weights = random_inception(tmp_path / "inception.safetensors")
    seen = []
    real_features = fid_module.features
    monkeypatch.setattr(fid_module, "features", lambda net, images, batch=50: (
        seen.append(len(images)), real_features(net, images, batch))[1])

    class Model:
        device = torch.device("cpu")

        def generate(self, n, generator=None):
            return torch.rand(n, 3, 32, 32, generator=generator)

        def autoencode(self, x):
            return x * 0.8

    data = SynthFaces("test", image_size=32, persons=4, clips_per_person=2, frames_per_clip=8, cache=False)
    first = fid_module.fid(Model(), data, str(weights), n=16, batch=8)
    assert sum(seen) == 48 and len(list((tmp_path / "cache").glob("fid-real-*.safetensors"))) == 1
    seen.clear()
    second = fid_module.fid(Model(), data, str(weights), n=16, batch=8)
    assert sum(seen) == 32 and second == first
    seen.clear()
    other = SynthFaces("test", image_size=32, persons=4, clips_per_person=2, frames_per_clip=8, seed=1, cache=False)
    fid_module.fid(Model(), other, str(weights), n=16, batch=8)
    assert sum(seen) == 48 and len(list((tmp_path / "cache").glob("fid-real-*.safetensors"))) == 2
