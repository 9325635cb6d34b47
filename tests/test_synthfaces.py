import torch
import pytest

from fsx.attributes import SamplerSpec
from fsx.data import BatchSampler, SynthFaces, render
from fsx.data.face_params import CATEGORY_VA, STYLE_FIELDS, mix


@pytest.fixture(scope="module")
def small():
    return SynthFaces("train", image_size=64, persons=6, clips_per_person=4, frames_per_clip=8, cache=False)


def test_same_seed_same_pixels_and_batch_independent(small):
    other = SynthFaces("train", image_size=64, persons=6, clips_per_person=4, frames_per_clip=8, cache=False)
    a, la = small.get_batch([3, 17, 40])
    b, lb = other.get_batch([3, 17, 40])
    assert torch.equal(a, b)
    alone, _ = small.get_batch([17])
    torch.testing.assert_close(alone[0], a[1], atol=1e-5, rtol=0)  # a sample does not depend on its batch mates
    different = SynthFaces("train", image_size=64, persons=6, clips_per_person=4, frames_per_clip=8, seed=1, cache=False)
    assert not torch.equal(different.get_batch([3])[0], a[:1])


def test_cache_gives_the_same_images_up_to_8_bit_rounding(small):
    cached = SynthFaces("train", image_size=64, persons=6, clips_per_person=4, frames_per_clip=8, cache=True)
    x = cached.images([5, 9])
    y = cached.images([9, 5])  # second read comes from the cache
    assert torch.equal(x[0], y[1])
    assert (x - small.images([5, 9])).abs().max() <= 0.5 / 255 + 1e-6


def test_labels_in_range(small):
    lab = small.labels
    yaw, pitch, roll = lab["pose"].unbind(1)
    assert yaw.abs().max() <= 45 and pitch.abs().max() <= 30 and roll.abs().max() <= 25
    assert lab["valence"].abs().max() <= 1 and lab["arousal"].abs().max() <= 1
    assert set(lab["category"].tolist()) <= set(range(8))
    box = CATEGORY_VA[lab["category"]]
    eps = 1e-5
    assert torch.all((lab["valence"] >= box[:, 0] - eps) & (lab["valence"] <= box[:, 1] + eps))
    assert torch.all((lab["arousal"] >= box[:, 2] - eps) & (lab["arousal"] <= box[:, 3] + eps))


def test_changing_only_expression_leaves_background_unchanged(small):
    p = small.params_of([0, 1, 2, 3])
    q = dict(p, expression=small.params_of([20, 30, 41, 45])["expression"])
    a, cov_a = render(p, 64, return_coverage=True)
    b, cov_b = render(q, 64, return_coverage=True)
    assert not torch.equal(a, b)  # the faces did change
    background = (cov_a + cov_b) == 0
    # the camera blur reaches one pixel: keep away from the face by one pixel
    background = -torch.nn.functional.max_pool2d(-background.float()[:, None], 3, 1, 1)[:, 0] > 0.5
    assert background.float().mean() > 0.1  # the face fills most of the frame; enough background remains to check
    diff = (a - b).abs().amax(1)
    assert diff[background].max() == 0


def test_yaw_mirrors(small):
    p = small.params_of([0, 8, 16, 33])
    st = p["style"]
    for f in ("light_x", "bg_amp", "noise", "temperature"):
        st[:, STYLE_FIELDS.index(f)] = 0
    p["expression"][:, 2] = 1  # happy: symmetric (contempt is one-sided on purpose)
    for yaw in (15.0, 40.0):
        left, right = dict(p), dict(p)
        left["pose"] = torch.tensor([[yaw, 5.0, 0.0]]).expand(4, 3)
        right["pose"] = torch.tensor([[-yaw, 5.0, 0.0]]).expand(4, 3)
        a = render(left, 64)
        b = render(right, 64).flip(-1)
        assert (a - b).abs().mean() < 0.01, (a - b).abs().mean()
        assert (a - render(right, 64)).abs().mean() > 0.02  # and the two poses are really different pictures


def test_counterfactual_equals_direct_render_of_mixed_parameters(small):
    a, b = [1, 2], [50, 60]
    for attrs_ in (["expression"], ["pose", "style"]):
        cf = small.counterfactual(a, b, attrs_)
        direct = render(mix(small.params_of(a), small.params_of(b), attrs_), 64)
        assert torch.equal(cf, direct)
    everything_but = small.counterfactual(a, b, ["identity"], everything_except=True)
    assert torch.equal(everything_but, render(mix(small.params_of(a), small.params_of(b), {"pose", "expression", "style"}), 64))
    with pytest.raises(KeyError, match="unknown SynthFaces factor"):
        small.counterfactual(a, b, ["age"])


def test_persons_differ_and_clip_frames_share_identity_and_style(small):
    lab, par = small.labels, small.params
    first, second = 0, 8 * 4  # person 0 and person 1
    assert lab["person"][first] != lab["person"][second]
    assert not torch.equal(par["identity"][first], par["identity"][second])
    assert not torch.equal(small.images([first]), small.images([second]))
    clip = torch.nonzero(lab["clip"] == lab["clip"][5]).flatten()
    assert len(clip) == 8 and len(set(lab["person"][clip].tolist())) == 1
    assert torch.all(par["identity"][clip] == par["identity"][clip[0]])
    seed_col = STYLE_FIELDS.index("noise_seed")
    style = torch.cat([par["style"][:, :seed_col], par["style"][:, seed_col + 1 :]], 1)
    assert torch.all(style[clip] == style[clip[0]])
    # frames move smoothly: neighbouring yaws within a few degrees
    assert (par["pose"][clip][1:] - par["pose"][clip][:-1]).abs().max() < 20


def test_train_and_test_persons_are_disjoint():
    tr = SynthFaces("train", persons=20, frames_per_clip=2, cache=False)
    te = SynthFaces("test", persons=10, frames_per_clip=2, cache=False)
    assert not set(tr.labels["person"].tolist()) & set(te.labels["person"].tolist())
    assert not set(tr.labels["clip"].tolist()) & set(te.labels["clip"].tolist())
    ids_tr = {tuple(r.tolist()) for r in tr.params["identity"]}
    assert not any(tuple(r.tolist()) in ids_tr for r in te.params["identity"])


def test_label_partial_sources_expose_only_their_fields(small):
    ids = small.source(["person"], name="ids")
    _, lab = ids.get_batch([0, 1])
    assert set(lab) == {"person"}
    with pytest.raises(ValueError, match="unknown label field"):
        small.source(["age"])


def test_identity_and_style_macro_batches(small):
    big = SynthFaces("train", persons=30, clips_per_person=4, frames_per_clip=4, cache=False)
    ident = BatchSampler(big.labels, SamplerSpec(("person",), (20,)), batch_size=40, seed=0)
    batch = next(ident)
    persons = big.labels["person"][batch]
    assert len(batch) == 40 and len(persons.unique()) == 20
    assert all((persons == p).sum() == 2 for p in persons.unique())
    style = BatchSampler(big.labels, SamplerSpec(("person", "clip"), (5, 4)), batch_size=40, seed=0)
    batch = next(style)
    persons, clips = big.labels["person"][batch], big.labels["clip"][batch]
    assert len(persons.unique()) == 5 and len(clips.unique()) == 20
    # deterministic by seed; ranks draw different batches
    assert next(BatchSampler(big.labels, SamplerSpec(("person",), (20,)), 40, seed=3)) == next(
        BatchSampler(big.labels, SamplerSpec(("person",), (20,)), 40, seed=3))
    assert next(BatchSampler(big.labels, SamplerSpec(), 40, seed=3, rank=0)) != next(
        BatchSampler(big.labels, SamplerSpec(), 40, seed=3, rank=1))


def test_small_batches_shrink_the_macro_batch():
    big = SynthFaces("train", persons=30, clips_per_person=4, frames_per_clip=4, cache=False)
    s = BatchSampler(big.labels, SamplerSpec(("person",), (20,)), batch_size=8, seed=0)
    persons = big.labels["person"][next(s)]
    assert len(persons.unique()) == 4  # every person still has a positive


def test_synth_cli_writes_each_vary_grid(tmp_path):
    from PIL import Image

    from conftest import run_fsx

    for vary in (None, "pose", "expression"):
        out = tmp_path / f"{vary}.png"
        args = ["synth", "--out", out, "--n", "16", "--size", "32"] + (["--vary", vary] if vary else [])
        run_fsx(*args, check=True)
        im = Image.open(out)
        assert im.size == (8 * 34 + 2, 2 * 34 + 2)


def _random_params(n: int, seed: int) -> dict:
    from fsx.data.face_params import sample_expression, sample_identity, sample_pose, sample_style

    g = torch.Generator().manual_seed(seed)
    return {"pose": sample_pose(n, g), "identity": sample_identity(n, g), "expression": sample_expression(n, g),
            "style": sample_style(n, g)}


def test_windowed_parts_render_the_same_pixels_as_whole_image_parts():
    """Each part is evaluated only inside a window that must contain all of it: the pixels must not change."""
    p = _random_params(48, seed=7)
    for size in (32, 64):
        # Equal up to float rounding (windows shift the pixel grid by other sums); a part cut off by
        # its window would differ by its whole colour.
        torch.testing.assert_close(render(p, size, windows=True, backend="torch"), render(p, size, windows=False),
                                   atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_compiled_renderer_draws_the_torch_renderers_pixels(size):
    """The numba loop (compositing.py) and the torch reference draw the same images and coverage up to float
    rounding, at every size, hats, glasses, open mouths and turned heads included (random faces)."""
    pytest.importorskip("numba")
    p = _random_params(16 if size == 256 else 64, seed=size)
    for field in ("hat", "glasses"):  # make sure some faces wear a hat and glasses
        p["style"][:8, STYLE_FIELDS.index(field)] = 1.0
    img, cov = render(p, size, backend="compiled", return_coverage=True)
    ref, ref_cov = render(p, size, backend="torch", return_coverage=True)
    torch.testing.assert_close(img, ref, atol=2e-4, rtol=0)
    torch.testing.assert_close(cov, ref_cov, atol=2e-4, rtol=0)
    assert torch.equal(img, render(p, size, backend="compiled"))  # deterministic, whatever the threads did


def test_the_compiled_renderer_leaves_torch_on_the_threads_it_was_given():
    """numba's OpenMP pool, started by the first compiled render, sets the process's OpenMP thread count to its own;
    torch reads that count, so a run told to use one thread would go on with numba's. In a fresh interpreter whose
    numba may use two threads (the suite's workers allow it one, which would hide the change)."""
    pytest.importorskip("numba")
    import os
    import subprocess
    import sys

    code = (
        "import torch, numba\n"
        "torch.set_num_threads(1)\n"
        "from fsx.data.face_params import sample_expression, sample_identity, sample_pose, sample_style\n"
        "from fsx.data import render\n"
        "g = torch.Generator().manual_seed(0)\n"
        "p = {'pose': sample_pose(8, g), 'identity': sample_identity(8, g), 'expression': sample_expression(8, g),"
        " 'style': sample_style(8, g)}\n"
        "render(p, 32, backend='compiled')\n"
        "print(numba.config.NUMBA_NUM_THREADS, numba.threading_layer(), torch.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    numba_threads, layer, torch_threads = out.stdout.split()
    assert numba_threads == "2" and torch_threads == "1", (out.stdout, layer)


def test_render_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        render(_random_params(2, seed=0), 64, backend="cuda")


def test_without_numba_the_torch_path_renders_and_compiled_names_what_is_missing():
    """numba is a dependency, but a Python it does not support yet must still render: hide it (sys.modules entry
    None makes its import fail, as if not installed) in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch\n"
        "from fsx.data.face_params import sample_expression, sample_identity, sample_pose, sample_style\n"
        "from fsx.data import render\n"
        "g = torch.Generator().manual_seed(0)\n"
        "p = {'pose': sample_pose(4, g), 'identity': sample_identity(4, g), 'expression': sample_expression(4, g),"
        " 'style': sample_style(4, g)}\n"
        "assert torch.equal(render(p, 32), render(p, 32, backend='torch'))\n"
        "try:\n"
        "    render(p, 32, backend='compiled')\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs numba" in out.stdout
