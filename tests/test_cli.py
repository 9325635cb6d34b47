"""The CLI as a real subprocess."""

import json
import os
import re
import shlex
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
    assert proc.returncode == 2
    assert "bad.safetensors" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def glasses_site(tmp_path_factory):
    """The README's plugin example, installed by pip for real into its own target folder."""
    target = tmp_path_factory.mktemp("glasses_site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(REPO / "tests" / "plugin_example")],
        check=True, capture_output=True, text=True,
    )
    return target


def readme_walkthrough() -> list[str]:
    """The shell commands of the README's plugin walkthrough, in order."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Writing an attribute plugin"):]
    section = section[: section.index("\n## ", 5)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_plugin_walkthrough_runs_as_written(glasses_site, tmp_path):
    """Each command of the README's walkthrough, run in a fresh folder. Only sizes change: ``--preset tiny`` for
    training, fewer samples for evaluation and export; ``pip install ./fsx-glasses`` installs the same package
    (tests/plugin_example) into a folder of its own rather than into this environment."""
    env = {"PYTHONPATH": str(glasses_site)}
    commands = readme_walkthrough()
    assert commands[0] == "pip install ./fsx-glasses" and len(commands) == 9, commands
    out = {}
    for line in commands[1:]:
        args = shlex.split(line)
        assert args[0] == "fsx", line
        if args[1] == "train":
            args += ["--preset", "tiny"]
        if args[1] == "eval":
            args += ["--test-persons", "4", "--train-samples", "200", "--test-samples", "120"]
        if args[1] == "synth":
            args[args.index("-n") + 1] = "192"
        p = run_fsx(*args[1:], env_extra=env, cwd=tmp_path)
        assert p.returncode == 0, (line, p.stderr[-2000:])
        out[line] = p
    plugins = out["fsx plugins"].stdout
    assert re.search(r"glasses\s+-\s+4\s+glasses\s+random\s+fsx-glasses 0.1.0", plugins), plugins
    run = tmp_path / "runs" / "glasses"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/task_glasses" in r for r in rows) and any("loss/aug_glasses" in r for r in rows)
    assert fsx.read_metadata(run / "model.safetensors")["info"]["labels"]["glasses"]["labelled_by"] == ["synthfaces"]
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["table"]["glasses"]["results"]) == {"pose", "identity", "expression", "style", "glasses",
                                                           "not_glasses"}
    assert "| glasses | AUC |" in (run / "eval" / "report.md").read_text()
    assert (run / "audit" / "audit.png").is_file() and (tmp_path / "glasses-edit.png").is_file()
    assert (run / "eval" / "explain-glasses.png").is_file()  # Fig. 6 for any classification attribute
    mine = tmp_path / "runs" / "mine"
    assert json.loads((mine / "config.json").read_text())["labels"]["glasses"]["labelled_by"] == ["mine"]
    assert "glasses" in json.loads((mine / "eval" / "metrics.json").read_text())["table"]
    # Without the plugin installed the checkpoint refuses to load, naming the missing attribute.
    proc = subprocess.run([sys.executable, "-c", f"import fsx; fsx.load({str(run / 'model.safetensors')!r})"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "attribute 'glasses' (package fsx-glasses 0.1.0) is not installed" in proc.stderr


@pytest.mark.slow
def test_readme_main_command_converts_onet_then_trains_the_demo(tmp_path):
    """The README's main command after its two installs (this environment has them): ``python -m fsx.onet`` writes
    ONet's safetensors into an empty cache, then its ``fsx train`` runs the demo preset from it. Only the size changes:
    one step per stage instead of the preset's budgets."""
    import importlib.util

    if importlib.util.find_spec("facenet_pytorch") is None:
        pytest.skip("needs pip install --no-deps facenet-pytorch, as the README's main command does")
    readme = (REPO / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## Python")]
    parts = [p.strip() for p in re.findall(r"```bash\n(.*?)```", quick, re.S)[0].split("&&")]
    assert parts[-2:-1] == ["python -m fsx.onet"] and parts[-1].startswith("fsx train "), parts
    env = {"FSX_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "fsx.onet"], capture_output=True, text=True,
                       env={**os.environ, **env})
    assert p.returncode == 0 and (tmp_path / "cache" / "onet.safetensors").is_file(), p.stderr
    p = run_fsx(*shlex.split(parts[-1])[1:], "--steps", "1", env_extra=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    config = json.loads((tmp_path / "runs" / "demo" / "config.json").read_text())
    assert config["preset"] == "demo" and config["loss"]["rec_perceptual_net"] == "onet"
    rows = [json.loads(line) for line in (tmp_path / "runs" / "demo" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("loss/rec_perceptual", 0) > 0 for r in rows), rows[0]


def test_readme_plugin_example_is_the_tested_package():
    readme = (REPO / "README.md").read_text()
    for f in ("pyproject.toml", "fsx_glasses/__init__.py"):
        assert (REPO / "tests" / "plugin_example" / f).read_text().strip() in readme, f


@pytest.mark.slow
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
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.count("\n") == 1 and "metadata is incomplete" in p.stderr and str(path) in p.stderr
    ckpt = tmp_path / "m.safetensors"
    fsx.save_model(fsx.FaceModel(tiny_config()), ckpt)
    out = tmp_path / "new" / "folder" / "gen.png"
    p = run_fsx("generate", ckpt, "-n", "2", "--out", out)
    assert p.returncode == 0 and out.is_file(), p.stderr
    p = run_fsx("train", "--preset", "tiny", "--out", tmp_path / "r", "--set", "loss.task=abc")
    assert p.returncode == 2 and "loss option 'task' must be a number, got 'abc'" in p.stderr, p.stderr
