"""Settings that would train the wrong thing or fail steps later are refused at once, naming the option; a
checkpoint with NaN or Inf weights is refused when loaded."""

import math

import pytest
import torch

import fsx
from conftest import run_fsx
from fsx.train import make_config


@pytest.mark.parametrize("overrides, named", [
    (dict(loss={"rec_phi": -5.0}), "loss.rec_phi"),
    (dict(loss={"cycle": math.nan}), "loss.cycle"),
    (dict(loss={"aug": math.inf}), "loss.aug"),
    (dict(optim={"lr_aae": 0.0}), "optim.lr_aae"),
    (dict(optim={"betas_aae": ("a", "b")}), "optim.betas_aae"),
    (dict(optim={"betas_phi": (0.9, 1.5)}), "optim.betas_phi"),
    (dict(model={"width": math.inf}), "width"),
    (dict(model={"width": 1e9}), "width"),
])
def test_a_bad_training_number_is_refused_by_name(overrides, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        make_config("tiny", **overrides)


@pytest.mark.parametrize("option, named", [("identity.weight=-1", "'weight'"), ("identity.margin=abc", "'margin'"),
                                           ("pose.weight=NaN", "'weight'")])
def test_a_bad_attribute_option_is_one_line_before_any_step(tmp_path, option, named):
    p = run_fsx("train", "--preset", "tiny", "--option", option, "--out", tmp_path / "run")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert named in p.stderr and ("identity" in p.stderr or "pose" in p.stderr)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_set_with_bad_betas_or_an_infinite_width_is_one_line(tmp_path):
    for args in (["--set", "optim.betas_aae=a,b"], ["--width", "inf"], ["--set", "loss.rec_phi=-5"]):
        p = run_fsx("train", "--preset", "tiny", *args, "--out", tmp_path / "run")
        assert p.returncode == 2 and "Traceback" not in p.stderr, (args, p.stderr[-1500:])


def test_a_checkpoint_with_a_nan_or_inf_weight_is_refused_naming_the_tensor(tmp_path):
    model = fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625)
    for bad in (math.nan, math.inf):
        with torch.no_grad():
            name, p = next((n, p) for n, p in model.named_parameters() if n.startswith("aae.G."))
            saved = p.clone()
            p.view(-1)[0] = bad
        path = tmp_path / f"bad-{bad}.safetensors"
        fsx.save_model(model, path)
        with pytest.raises(fsx.CheckpointError, match=f"{name}.*NaN or Inf"):
            fsx.load(path)
        with torch.no_grad():
            p.copy_(saved)
    fsx.save_model(model, tmp_path / "good.safetensors")
    fsx.load(tmp_path / "good.safetensors")
