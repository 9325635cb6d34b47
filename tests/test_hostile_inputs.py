"""Hostile inputs of issue 34, each one line naming what is wrong (or a counted skip), never a traceback and
never a silent wrong result. Each case failed before its fix."""

import sys

import pytest
import torch

import fsx
from fsx.train import make_config


def test_a_labels_table_written_by_a_spreadsheet_with_a_utf8_bom_is_read(tmp_path):
    from PIL import Image

    from fsx.data.folder import FolderSource

    for i in range(2):
        Image.new("RGB", (32, 32), (i * 100, 50, 50)).save(tmp_path / f"{i}.png")
    (tmp_path / "labels.csv").write_bytes("file,person\n0.png,1\n1.png,2\n".encode("utf-8-sig"))
    source = FolderSource(tmp_path, image_size=32, name="mine")
    assert len(source) == 2 and len(set(source.labels["person"].tolist())) == 2  # the "file" column was found


@pytest.mark.parametrize("seed", [10**20, -1])
def test_a_seed_torch_cannot_take_is_refused_naming_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        make_config("tiny", seed=seed)


def test_steps_that_train_nothing_are_refused_instead_of_writing_an_untrained_model():
    with pytest.raises(ValueError, match="nothing would be trained"):
        make_config("tiny", steps={"aae": 0, "disentangle": 0, "joint": 0, "refit": 0})
    with pytest.raises(ValueError, match="stage refit has 0 steps"):
        make_config("paper", stage="refit")  # the paper preset has no refit stage
    assert make_config("tiny", steps={"aae": 0, "disentangle": 0, "joint": 1, "refit": 0}).stages == ("joint",)


def test_steps_for_a_stage_the_preset_gives_none_are_parsed():
    from fsx.train.options import parse_steps

    assert parse_steps("100", "paper", "refit")["refit"] == 100


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path):
    from click.testing import CliRunner

    from fsx.cli import main

    result = CliRunner().invoke(main, ["train", "--preset", "tiny", "--device", "cuda", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--device cuda: torch sees no CUDA device" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("setting, message", [
    ("model.disentangler=glow", "Error: 'disentangler' must be in ('mlp', 'flow') (got 'glow')"),
    ("loss.rec_error=l3", "Error: 'rec_error' must be in ('l1', 'squared') (got 'l3')"),
])
def test_a_setting_outside_its_choices_is_one_line_naming_field_and_choices(tmp_path, setting, message):
    from click.testing import CliRunner

    from fsx.cli import main

    result = CliRunner().invoke(main, ["train", "--preset", "tiny", "--set", setting, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and result.output.rstrip().splitlines()[-1] == message
    assert "Attribute(" not in result.output and not (tmp_path / "r").exists()


def test_a_plugin_hook_that_calls_sys_exit_is_a_reported_problem_not_the_end_of_fsx():
    from fsx.plugins import hookimpl, load_registry

    class Quitter:
        @staticmethod
        @hookimpl
        def fsx_register_attributes():
            sys.exit(3)

    registry = load_registry([Quitter], entry_points=False)
    assert "pose" in registry.attributes  # the built-ins still load
    assert any("SystemExit" in str(p) and "Quitter" in str(p) for p in registry.problems)


def test_a_plugin_loss_that_returns_a_non_scalar_or_no_loss_is_named():
    import attrs

    from fsx.attributes import Attribute, Label
    from fsx.layout import Layout
    from fsx.losses import task_losses

    @attrs.frozen
    class PerRow:
        def __call__(self, features, labels, generator=None):
            return features.sum(1)  # one value per row: a plugin bug

    a = attrs.evolve(Attribute(name="rows", dim=2, labels=(Label("light_x", "scalar"),), loss=PerRow()),
                     package="fsx-rows", version="0.1")
    with pytest.raises(ValueError, match=r"attribute 'rows' \(package fsx-rows 0.1\): its loss returned \(4,\)"):
        task_losses(torch.randn(4, 2), {"light_x": torch.randn(4)}, [a], Layout([("rows", 2)]))

    @attrs.frozen
    class Parts:
        def __call__(self, features, labels, generator=None):
            return {"fit": features.pow(2).mean(), "rows": features.sum(1)}  # one part per row: a plugin bug

    b = attrs.evolve(a, loss=Parts())
    with pytest.raises(ValueError, match=r"its loss returned part 'rows': \(4,\), not a scalar"):
        task_losses(torch.randn(4, 2), {"light_x": torch.randn(4)}, [b], Layout([("rows", 2)]))

    @attrs.frozen
    class Scheduled(PerRow):
        def at(self, stage, step):
            return None if step >= 2 else self  # forgets to return the loss: a plugin bug

    c = attrs.evolve(a, loss=Scheduled())
    assert c.at("joint", 1) is c
    with pytest.raises(ValueError, match=r"attribute 'rows' \(package fsx-rows 0.1\): its loss's at\('joint', 2\) "
                                         r"returned NoneType, not a loss"):
        c.at("joint", 2)


@pytest.mark.parametrize("spec", ["synthfaces:test:-1", "synthfaces:test:99999999"])
def test_a_picture_index_outside_its_source_is_refused(spec):
    from fsx.data.images import ImageReadError
    from fsx.data.specs import load_image

    with pytest.raises(ImageReadError, match="outside 0.."):
        load_image(spec, 32)


def _tiny_run(out, **over):
    from fsx.train import Trainer

    cfg = make_config("tiny", **{"steps": {"aae": 2, "disentangle": 0, "joint": 0, "refit": 0}, **over})
    return Trainer(cfg, out, progress=False, report=lambda line: None).fit()


def test_init_from_a_model_with_other_networks_is_refused_naming_them(tmp_path):
    from fsx.train import Trainer

    model = _tiny_run(tmp_path / "a", model={"width": 0.125})
    with pytest.raises(ValueError, match=r"--init .*width: 0.125 \(init\) vs 0.0625 \(this run\)"):
        Trainer(make_config("tiny"), tmp_path / "b", init=model, progress=False)


@pytest.mark.parametrize("damage", ["[1, 2, 3]\n", '{"stage": "aae", "step": 2, "glo'])
def test_a_metrics_line_that_is_no_json_object_is_dropped_and_named_on_resume(tmp_path, damage):
    from fsx.train import Trainer

    out = tmp_path / "run"
    _tiny_run(out, ckpt_every=1, log_every=1, steps={"aae": 3, "disentangle": 0, "joint": 0, "refit": 0})
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(damage)
    said = []
    Trainer(None, out, resume=True, progress=False, report=said.append)
    assert any(str(out / "metrics.jsonl") in line and "1 unreadable line(s) dropped" in line for line in said), said
    assert all(line.startswith("{") for line in (out / "metrics.jsonl").read_text().splitlines())


def test_a_checkpoint_copied_from_another_run_or_an_edited_config_is_refused_on_resume(tmp_path):
    import shutil

    from fsx.checkpoint import CheckpointError
    from fsx.train import Trainer

    a, b = tmp_path / "a", tmp_path / "b"
    _tiny_run(a, seed=1)
    _tiny_run(b, seed=2)
    shutil.copy(b / "checkpoint.safetensors", a / "checkpoint.safetensors")
    with pytest.raises(CheckpointError, match=r"describe different runs \(seed: 2 \(checkpoint\) vs 1 \(config.json\)"):
        Trainer(None, a, resume=True, progress=False)
    edited = (b / "config.json").read_text().replace('"batch_size": 16', '"batch_size": 8')
    (b / "config.json").write_text(edited)
    with pytest.raises(CheckpointError, match=r"batch_size: 16 \(checkpoint\) vs 8 \(config.json\)"):
        Trainer(None, b, resume=True, progress=False)


def test_resume_of_a_run_killed_before_its_first_checkpoint_says_force(tmp_path):
    from fsx.checkpoint import CheckpointError
    from fsx.train import Trainer

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what a run leaves when it is killed before its first checkpoint
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(CheckpointError, match="start it again with --force"):
        Trainer(None, out, resume=True, progress=False)


def test_retrieve_against_a_gallery_encoded_by_another_model_is_refused(tmp_path):
    """An embeddings file records the model that made it (its sub-vectors and a hash of its weights); retrieve
    with another model was a traceback (--by all, other sizes) or a silent ranking of nonsense (--by identity)."""
    from click.testing import CliRunner

    from fsx.cli import main

    paths = []
    for seed, width in ((0, 0.0625), (1, 0.0625), (2, 0.125)):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"m{seed}.safetensors")
        fsx.save_model(fsx.build_model("pose,id,expr,style", image_size=32, width=width), paths[-1])
    run = CliRunner().invoke
    result = run(main, ["encode", str(paths[0]), "synthfaces:test:0", "synthfaces:test:1", "--out",
                        str(tmp_path / "g.safetensors")])
    assert result.exit_code == 0, result.output
    ok = run(main, ["retrieve", str(paths[0]), "--query", "synthfaces:test:0", "--gallery", str(tmp_path / "g.safetensors"),
                    "--by", "identity", "-k", "1"])
    assert ok.exit_code == 0 and "synthfaces:test:0" in ok.output
    for other, by in ((paths[1], "identity"), (paths[2], "all")):
        bad = run(main, ["retrieve", str(other), "--query", "synthfaces:test:0", "--gallery",
                         str(tmp_path / "g.safetensors"), "--by", by])
        assert bad.exit_code == 2 and "made by another model" in bad.output and "Traceback" not in bad.output


def test_a_fifo_named_like_a_picture_is_skipped_not_waited_on(tmp_path):
    import os

    from click.testing import CliRunner

    from fsx.cli import main
    from fsx.data.images import ImageReadError, read_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(fifo, 32)
    torch.manual_seed(0)
    fsx.save_model(fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625), tmp_path / "m.safetensors")
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "m.safetensors"), "synthfaces:test:0", str(fifo),
                                       "--out", str(tmp_path / "e.safetensors")])
    assert result.exit_code == 0 and "skipped 1 unreadable" in result.output and "not a regular file" in result.output


@pytest.mark.parametrize("column", ["yaw", "brightness"])  # a declared label, and a column no attribute declares
def test_an_infinite_label_is_refused_naming_file_row_and_column(tmp_path, column):
    from PIL import Image

    from fsx.data.folder import FolderSource
    from fsx.data.labels import LabelTableError

    for i in range(2):
        Image.new("RGB", (32, 32)).save(tmp_path / f"{i}.png")
    extra = ",pitch,roll" if column == "yaw" else ""
    values = ",0,0" if column == "yaw" else ""
    (tmp_path / "labels.csv").write_text(f"file,{column}{extra}\n0.png,1{values}\n1.png,inf{values}\n")
    with pytest.raises(LabelTableError, match=rf"labels.csv, row 3, column '{column}': 'inf' is not a finite number"):
        FolderSource(tmp_path, image_size=32, name="mine")


def test_a_synthfaces_set_larger_than_free_memory_is_refused_before_it_is_allocated():
    from fsx.data.synthfaces import SynthFaces

    with pytest.raises(ValueError, match=r"would need [\d.]+ GiB .* use fewer persons \(synth.persons\)"):
        SynthFaces("train", image_size=64, persons=100_000_000)


def test_eval_names_a_wrong_lfw_folder_before_it_evaluates(tmp_path):
    from fsx.eval import evaluate

    torch.manual_seed(0)
    model = fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625)
    said = []
    with pytest.raises(FileNotFoundError, match="pairs.txt"):
        evaluate(model, tmp_path / "out", lfw=str(tmp_path), progress=said.append)
    assert not said and not (tmp_path / "out").exists()  # before the first measure, and before any output


def test_without_the_faces_extra_a_raw_photo_is_encoded_unaligned_with_a_one_line_warning(tmp_path, monkeypatch):
    """The faces extra is installed for the suite; its absence is simulated (the one thing mocked here) by making
    the face analyser raise what fsx raises when dlib or OpenCV cannot be imported."""
    from click.testing import CliRunner
    from PIL import Image

    import fsx.data.specs
    from fsx.cli import main
    from fsx.data.faces import FacesExtraMissing

    def missing(*args, **kwargs):
        raise FacesExtraMissing("the faces extra is not installed")

    monkeypatch.setattr(fsx.data.specs, "FaceAnalyser", missing)
    Image.new("RGB", (80, 60), (200, 150, 120)).save(tmp_path / "photo.jpg")
    torch.manual_seed(0)
    fsx.save_model(fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625), tmp_path / "m.safetensors")
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "m.safetensors"), str(tmp_path / "photo.jpg"),
                                       "--out", str(tmp_path / "e.safetensors")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "not aligned" in warnings[0] and "fsx[faces]" in warnings[0]


@pytest.mark.parametrize("command", ["eval", "audit"])
def test_an_output_folder_that_cannot_be_written_is_named_before_any_work(tmp_path, command):
    from click.testing import CliRunner

    from fsx.cli import main

    torch.manual_seed(0)
    fsx.save_model(fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625), tmp_path / "m.safetensors")
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "report"
    result = CliRunner().invoke(main, [command, str(tmp_path / "m.safetensors"), "--out", str(out)])
    assert result.exit_code == 2 and f"--out {out}: cannot write there" in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_synth_export_on_a_full_disk_names_the_picture(tmp_path):
    """A real file-size limit (the kernel stops the write as a full disk would), in a subprocess of its own."""
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY))
        from fsx.cli import main
        main(["synth", "--export", {str(tmp_path / "x")!r}, "-n", "4", "--size", "64"])
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "could not write" in p.stderr and str(tmp_path / "x" / "img") in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_a_soak_of_kills_at_random_moments_ends_bit_identical(tmp_path):
    """bench/soak.py with a small count (the bench's own default is 20 kills): each kill -9 at a seeded random
    moment, then --resume (or --force where no checkpoint was written yet), and the finished run's weights equal
    an uninterrupted run's."""
    import subprocess
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
    p = subprocess.run([sys.executable, str(bench), "--cycles", "3", "--steps", "60", "--latest", "4.5", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    assert "3 kills, then the run finished: bit-identical" in p.stdout


def test_a_plugin_slow_to_import_is_named_by_every_command(tmp_path):
    from conftest import run_fsx, write_dist

    site = write_dist(tmp_path / "site", "fsx-slow", "0.3.0", {"fsx_slow": """
        import time
        time.sleep(1.5)  # an import that loads a large model, say

        from fsx.plugins import hookimpl

        @hookimpl
        def fsx_register_attributes():
            return []
    """}, {"slow": "fsx_slow"})
    env = {"PYTHONPATH": str(site)}
    listed = run_fsx("plugins", env_extra=env)
    assert listed.returncode == 0 and "note: plugin 'slow' (package fsx-slow 0.3.0) took 1." in listed.stderr
    refused = run_fsx("train", "--preset", "tiny", "--steps", "0", "--out", tmp_path / "r", env_extra=env)
    assert refused.returncode == 2 and refused.stderr.count("plugin 'slow' (package fsx-slow 0.3.0) took") == 1
    quick = run_fsx("plugins")  # without it: no note
    assert "note:" not in quick.stderr


def _folder(root, persons):
    """A labels.csv folder of SynthFaces test pictures, one row per entry of ``persons``."""
    import csv

    from PIL import Image

    from fsx.data import SynthFaces

    root.mkdir()
    pictures = SynthFaces("test", image_size=32, persons=8, frames_per_clip=4, cache=False).images(range(len(persons)))
    with open(root / "labels.csv", "w", newline="") as fh:
        fh.write("file,person,split\n")
        for i, (person, picture) in enumerate(zip(persons, pictures)):
            Image.fromarray((picture.permute(1, 2, 0) * 255).byte().numpy()).save(root / f"{i}.png")
            fh.write(f"{i}.png,{person},{'test' if i % 2 else 'train'}\n")
    return root


def test_eval_on_data_with_few_same_person_pairs_says_not_measured_instead_of_resampling(tmp_path):
    """Almost every person has one picture: 3 distinct same-person pairs among the test rows, where sampling with
    repeats once reported thousands of pairs."""
    import json

    from conftest import run_fsx

    torch.manual_seed(0)
    fsx.save_model(fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625), tmp_path / "m.safetensors")
    persons = [100 + i for i in range(40)]
    for i in (1, 3, 5):
        persons[i] = 7  # three test rows of one person: 3 distinct pairs
    data = _folder(tmp_path / "few", persons)
    p = run_fsx("eval", tmp_path / "m.safetensors", "--data", f"few={data}", "--fid-samples", "0", "--out",
                tmp_path / "eval")
    assert p.returncode == 0, p.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "identity" not in metrics["table"]
    assert metrics["not_measured"]["identity"].startswith("only 3 distinct pairs of test samples share a 'person'")
    assert "not measured: only 3 distinct pairs" in (tmp_path / "eval" / "report.md").read_text()


def test_sample_pairs_never_repeats_a_pair():
    from fsx.eval.probes import sample_pairs

    person = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 5, 6])  # 4 distinct same-person pairs
    i, j, same = sample_pairs(person, 1000)
    pairs = {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist())}
    assert len(pairs) == len(i) and int(same.sum()) == 4


def test_a_folder_source_given_as_outside_reads_files_outside_its_folder(tmp_path):
    from fsx.data.sources import parse_sources

    data = _folder(tmp_path / "mine", [1, 2])
    (tmp_path / "elsewhere.png").write_bytes((data / "0.png").read_bytes())
    (data / "labels.csv").write_text("file,person\n0.png,1\n../elsewhere.png,2\n")
    with pytest.raises(ValueError, match=r"labels.csv, row 3: file '../elsewhere.png' lies outside"):
        parse_sources(f"mine={data}", 32)
    (source,) = parse_sources(f"mine=outside:{data}", 32)
    x, labels = source.get_batch([0, 1])
    assert source.name == "mine" and x.shape == (2, 3, 32, 32) and labels["person"].unique().numel() == 2
