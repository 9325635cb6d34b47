"""The perceptual term's networks (``loss.rec_perceptual_net``): MTCNN's ONet converted once from the
facenet-pytorch wheel and checked on real faces, each network as a distance, and each chosen by a training run."""

import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import random_inception, run_fsx
from fsx.onet import ONet, convert, load_onet
from fsx.perceptual import InceptionPerceptual, ONetPerceptual, RandomPerceptual


def test_onet_converted_from_the_wheel_tells_real_faces_from_non_faces_and_places_their_parts(tmp_path):
    """scikit-image's lfw_subset: 100 real faces and 100 non-faces (25 x 25, grey). The converted network must read
    every face as one and no non-face, and put the eyes above the nose above the mouth, left of right: a wrong
    layer name, weight layout or the Caffe flatten order fails this."""
    if importlib.util.find_spec("facenet_pytorch") is None:
        pytest.skip("needs pip install --no-deps facenet-pytorch (it ships ONet's weights)")
    from skimage import data as skdata

    net = load_onet(convert(tmp_path / "onet.safetensors"))
    assert not any(p.requires_grad for p in net.parameters())
    grey = torch.from_numpy(skdata.lfw_subset()).float()[:, None]  # (200, 1, 25, 25) in [0, 1]
    x = F.interpolate(grey.expand(-1, 3, -1, -1), size=(48, 48), mode="bilinear", align_corners=False) * 2 - 1
    with torch.no_grad():
        face, box, marks = net(x)
    assert box.shape == (200, 4) and marks.shape == (200, 10)
    assert (face[:100] > 0.5).all(), face[:100].min()
    assert (face[100:] < 0.5).all(), face[100:].max()
    ex, ey = marks[:100, :5], marks[:100, 5:]  # left eye, right eye, nose, left and right mouth corner
    assert (ex[:, 0] < ex[:, 1]).all() and (ex[:, 3] < ex[:, 4]).all()
    assert (ey[:, :2].max(1).values < ey[:, 2]).all() and (ey[:, 2] < ey[:, 3:].min(1).values).all()


def test_a_file_that_is_not_onet_is_refused_naming_it(tmp_path):
    bad = tmp_path / "other.safetensors"
    save_file({"conv1.weight": torch.zeros(32, 3, 3, 3)}, str(bad))
    with pytest.raises(ValueError, match=r"other\.safetensors: not MTCNN's ONet"):
        load_onet(bad)
    with pytest.raises(FileNotFoundError, match="python -m fsx.onet"):
        load_onet(tmp_path / "missing.safetensors")


def _networks(tmp_path):
    from fsx.eval.inception import load_inception

    torch.manual_seed(0)
    onet = ONet()  # the architecture at its default initialisation: the distance's arithmetic, not ONet's weights
    inception = load_inception(random_inception(tmp_path / "inception.safetensors"), channels_last=False)
    return {"random": RandomPerceptual(), "onet": ONetPerceptual(onet), "inception": InceptionPerceptual(inception)}


def test_each_perceptual_distance_is_zero_on_the_target_and_pulls_a_blurred_picture_back(tmp_path):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for name, dist in _networks(tmp_path).items():
        assert dist(x, x) == 0, name
        y = F.avg_pool2d(x, 5, 1, 2).requires_grad_(True)
        d = dist(x, y)
        d.backward()
        assert d > 0 and y.grad.abs().sum() > 0, name
        assert all(p.grad is None for p in dist.parameters()), f"{name}: the fixed network took a gradient"
        with torch.no_grad():
            assert dist(x, y - 0.5 * y.grad / y.grad.norm()) < d, f"{name}: its gradient does not lower it"


def test_training_names_the_network_and_a_missing_one_is_one_line(tmp_path):
    """A tiny run with ONet's term logs it; without converted weights, or with an unknown network, the run stops
    before its first step with one line that says what to do."""
    cache = tmp_path / "cache"
    cache.mkdir()
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in ONet().state_dict().items()}, str(cache / "onet.safetensors"))
    args = ["train", "--preset", "tiny", "--attributes", "pose", "--steps", "aae=2,disentangle=0,joint=0",
            "--set", "loss.rec_perceptual=0.5", "--set", "loss.rec_perceptual_net=onet"]
    p = run_fsx(*args, "--out", tmp_path / "run", env_extra={"FSX_CACHE": str(cache)})
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "aae" and r.get("loss/rec_perceptual", 0) > 0 for r in rows), rows[0]
    p = run_fsx(*args, "--out", tmp_path / "missing", env_extra={"FSX_CACHE": str(tmp_path / "empty")})
    assert p.returncode != 0 and "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "onet.safetensors" in errors[0] and "python -m fsx.onet" in errors[0], p.stderr
    assert not (tmp_path / "missing").exists(), "a run that stopped before its first step left its folder behind"
    p = run_fsx("train", "--preset", "tiny", "--set", "loss.rec_perceptual_net=vgg", "--out", tmp_path / "vgg")
    assert p.returncode != 0 and "Traceback" not in p.stderr and "rec_perceptual_net" in p.stderr, p.stderr
