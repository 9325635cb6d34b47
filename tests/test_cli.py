"""The CLI as a real subprocess."""

import json
import subprocess
import sys

import pytest

import fsx
from conftest import REPO, run_fsx


def test_version():
    out = run_fsx("--version", check=True).stdout
    assert fsx.__version__ in out


def test_plugins_lists_the_four_builtins_with_their_dims():
    out = run_fsx("plugins", "--json", check=True).stdout
    rows = {r["name"]: r for r in json.loads(out)["attributes"]}
    assert {n: r["dim"] for n, r in rows.items()} == {"pose": 3, "identity": 32, "expression": 32, "style": 32}
    assert rows["identity"]["aliases"] == ["id"] and rows["expression"]["aliases"] == ["expr"]
    text = run_fsx("plugins", check=True).stdout.splitlines()
    assert text[0].split()[:3] == ["NAME", "ALIASES", "DIM"]
    assert text[1].split()[:3] == ["pose", "-", "3"]


def test_train_unknown_attribute_exits_2_and_lists_known(tmp_path):
    proc = run_fsx("train", "--attributes", "pose,gaze", "--out", tmp_path)
    assert proc.returncode == 2
    assert "unknown attribute 'gaze'" in proc.stderr and "identity (id)" in proc.stderr


def test_info_on_a_bad_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    proc = run_fsx("info", bad)
    assert proc.returncode == 1
    assert "bad.safetensors" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def age_site(tmp_path_factory):
    """The README's plugin example, installed by pip for real into its own target folder."""
    target = tmp_path_factory.mktemp("age_site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(REPO / "tests" / "plugin_example")],
        check=True, capture_output=True, text=True,
    )
    return target


def test_pip_installed_plugin_appears_in_plugins_and_layout(age_site, tmp_path):
    env = {"PYTHONPATH": str(age_site)}
    rows = json.loads(run_fsx("plugins", "--json", env_extra=env, check=True).stdout)["attributes"]
    age = [r for r in rows if r["name"] == "age"]
    assert age and age[0]["dim"] == 8 and age[0]["package"] == "fsx-age 0.1.0"
    run_fsx("train", "--preset", "tiny", "--attributes", "pose,id,expr,style,age", "--steps", "0",
            "--out", tmp_path / "run", env_extra=env, check=True)
    info = run_fsx("info", tmp_path / "run" / "model.safetensors", env_extra=env, check=True).stdout
    assert "age          dim 8    from fsx-age 0.1.0" in info
    # Without the plugin installed the checkpoint refuses to load, naming the missing attribute.
    proc = subprocess.run([sys.executable, "-c", f"import fsx; fsx.load({str(tmp_path / 'run' / 'model.safetensors')!r})"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "attribute 'age' (package fsx-age 0.1.0) is not installed" in proc.stderr


def test_readme_plugin_example_is_the_tested_package():
    readme = (REPO / "README.md").read_text()
    for f in ("pyproject.toml", "fsx_age/__init__.py"):
        assert (REPO / "tests" / "plugin_example" / f).read_text().strip() in readme, f


def test_info_on_incomplete_metadata_and_outputs_into_new_folders(tmp_path):
    """fsx info on metadata that lacks config, attributes or image_size is one line; generate --out into a folder
    that does not exist yet creates it; --set with a value of the wrong type names the field."""
    import torch

    from conftest import tiny_config
    from fsx.checkpoint import save_tensors

    cfg = tiny_config().to_dict()
    cases = {"noconfig": {"format": "fsx-model", "attributes": []},
             "noattributes": {"format": "fsx-model", "config": cfg},
             "nosize": {"format": "fsx-model", "config": {k: v for k, v in cfg.items() if k != "image_size"},
                        "attributes": []}}
    for name, meta in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_tensors(path, {"w": torch.zeros(1)}, meta)
        p = run_fsx("info", path)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.count("\n") == 1 and "metadata is incomplete" in p.stderr and str(path) in p.stderr
    ckpt = tmp_path / "m.safetensors"
    fsx.save_model(fsx.FaceModel(tiny_config()), ckpt)
    out = tmp_path / "new" / "folder" / "gen.png"
    p = run_fsx("generate", ckpt, "-n", "2", "--out", out)
    assert p.returncode == 0 and out.is_file(), p.stderr
    p = run_fsx("train", "--preset", "tiny", "--out", tmp_path / "r", "--set", "batch_size=abc")
    assert p.returncode == 2 and "'batch_size' must be an integer, got 'abc'" in p.stderr
