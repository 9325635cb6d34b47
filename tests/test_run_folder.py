"""Nothing lost, nothing silent: a run folder is never overwritten or mixed, a resumed run is the run it was,
skipped inputs are counted where a user looks, a full disk keeps the last checkpoint, and every user error is
one line."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

import fsx
from conftest import fsx_in_a_terminal, run_fsx
from fsx.checkpoint import CheckpointError
from fsx.train import RunFolderError, TrainConfig, load_run_config, make_config, train


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def one_line_error(proc, *words, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, proc.stderr
    for w in words:
        assert w in error[0], (w, error[0])
    return error[0]


def test_mad_schedule_trains_with_steps_that_update_no_discriminator(tmp_path):
    """d_x_every=4, d_z_every=2: step 2 of 4 updates neither discriminator, which once crashed the run."""
    p = run_fsx("train", "--preset", "mad", "--image-size", "32", "--width", "0.0625", "--batch-size", "8",
                "--steps", "9", "--set", "model.latent_disc_hidden=32", "--set", "model.phi_hidden=32",
                "--set", "synth.persons=8", "--log-every", "1", "--out", tmp_path)
    assert p.returncode == 0, p.stderr
    rows = [r for r in metrics(tmp_path) if r["stage"] == "aae"]
    assert len(rows) == 9
    assert [r["step"] for r in rows if "loss/d_adv" in r] == [1, 5, 9]  # D_x on every 4th step
    assert [r["step"] for r in rows if "loss/d_enc" in r] == [1, 3, 5, 7, 9]  # D_z on every 2nd
    assert all("loss/rec" in r for r in rows)  # E and G train on every step
    assert fsx.load(tmp_path / "model.safetensors").metadata["preset"] == "mad"


def test_a_new_run_never_overwrites_an_old_one(tmp_path):
    cfg = make_config("tiny")
    train(cfg, tmp_path, progress=False)
    before = {n: (tmp_path / n).read_bytes() for n in ("model.safetensors", "metrics.jsonl", "refit.safetensors")}
    p = run_fsx("train", "--preset", "tiny", "--stage", "aae", "--out", tmp_path)
    one_line_error(p, "already holds a run", "--resume", "--force")
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(cfg, tmp_path, progress=False)
    # --force replaces the run: nothing of the old one is left beside the new one
    (tmp_path / "notes.txt").write_text("mine")
    train(make_config("tiny", stage="aae"), tmp_path, progress=False, force=True)
    assert not (tmp_path / "refit.safetensors").exists() and not (tmp_path / "joint.safetensors").exists()
    assert {r["stage"] for r in metrics(tmp_path)} == {"aae"}
    assert (tmp_path / "notes.txt").read_text() == "mine"  # not a file of the run: kept


def test_out_that_is_or_lies_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(run_fsx("train", "--preset", "tiny", "--out", tmp_path / "file"), "is a file")  # click's own check of --out
    one_line_error(run_fsx("train", "--preset", "tiny", "--out", tmp_path / "file" / "run"), "lies under")


def test_resume_continues_the_run_as_configured_or_names_what_differs(tmp_path):
    train(make_config("tiny", seed=5, steps={"aae": 3}, stage="aae"), tmp_path, progress=False)
    for change, field in ((dict(seed=6), "seed"), (dict(batch_size=8), "batch_size"),
                          (dict(data="ids=synthfaces:person"), "data")):
        cfg = make_config("tiny", steps={"aae": 3}, stage="aae", **{"seed": 5, **change})
        with pytest.raises(CheckpointError, match=rf"configured differently \({field}: ") as err:
            train(cfg, tmp_path, resume=True, progress=False)
        assert "not in list" not in str(err.value)
    p = run_fsx("train", "--preset", "tiny", "--out", tmp_path, "--resume", "--seed", "7")
    one_line_error(p, "configured differently", "seed: 5 (run) vs 7 (now)")
    # no options: the run's own configuration (bookkeeping such as --log-every may change)
    p = run_fsx("train", "--out", tmp_path, "--resume", "--log-every", "2")
    assert p.returncode == 0, p.stderr
    assert load_run_config(tmp_path).seed == 5 and load_run_config(tmp_path).log_every == 2
    assert fsx.load(tmp_path / "model.safetensors").metadata["seed"] == 5


def _labelled_folder(root, n=12, bad=("broken_a.png", "broken_b.jpg")):
    from fsx.data import SynthFaces

    data = SynthFaces("train", image_size=32, persons=3, clips_per_person=2, frames_per_clip=2, cache=False)
    root.mkdir(parents=True)
    labels = data.labels_of(list(range(n)))
    fields = ("person", "clip", "valence", "arousal", "category")
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", *fields, "yaw", "pitch", "roll"])
        for i, img in enumerate(data.images(list(range(n)))):
            Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()).save(root / f"{i}.png")
            w.writerow([f"{i}.png", *(labels[f][i].item() for f in fields), *labels["pose"][i].tolist()])
        for name in bad:
            (root / name).write_text("not an image")
            w.writerow([name, 0, 0, 0.0, 0.0, 0, 0.0, 0.0, 0.0])


def test_skipped_images_are_counted_on_the_console_in_metrics_config_and_info(tmp_path):
    _labelled_folder(tmp_path / "mine")
    celeba = tmp_path / "celeba"  # read lazily, batch by batch: its bad file is reported when met
    (celeba / "img_align_celeba").mkdir(parents=True)
    for i in range(1, 9):
        Image.new("RGB", (40, 48), (20 * i, 90, 40)).save(celeba / "img_align_celeba" / f"{i:06d}.jpg")
    (celeba / "img_align_celeba" / "000004.jpg").write_bytes(b"broken")
    (celeba / "identity_CelebA.txt").write_text("".join(f"{i:06d}.jpg {i % 3}\n" for i in range(1, 9)))
    (celeba / "list_eval_partition.txt").write_text("".join(f"{i:06d}.jpg 0\n" for i in range(1, 9)))
    run = tmp_path / "run"
    p = run_fsx("train", "--preset", "tiny", "--stage", "aae", "--steps", "6", "--batch-size", "8",
                "--data", f"mine={tmp_path / 'mine'},celeba={celeba}", "--out", run)
    assert p.returncode == 0, p.stderr
    assert "mine: 2 unreadable image(s) skipped" in p.stderr
    assert "broken_a.png" in p.stderr and "broken_b.jpg" in p.stderr and "000004.jpg" in p.stderr
    listed = (run / "skipped.txt").read_text().splitlines()
    assert len(listed) == 3 and sum(line.startswith("celeba\t") for line in listed) == 1
    assert metrics(run)[-1]["skipped"] == {"mine": 2, "celeba": 1}
    # images listed (the folder reads lazily, as the real sources do); the unreadable ones are counted apart
    assert json.loads((run / "config.json").read_text())["sources"]["mine"] == {
        "images": 14, "labels": ["arousal", "category", "clip", "person", "pose", "valence"], "skipped": 2}
    info = run_fsx("info", run / "model.safetensors", check=True).stdout
    assert '"skipped": 2' in info and '"skipped": 1' in info


def test_full_disk_keeps_the_previous_checkpoint_and_names_the_file(tmp_path):
    """The disk fills after the first checkpoint: a real EFBIG from the kernel (RLIMIT_FSIZE), not a mock."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from fsx.cli import main
        from fsx.train import trainer

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        first = trainer.Trainer.save_state

        def save_then_fill_the_disk(self):
            first(self)
            size = self.checkpoint_path.stat().st_size
            resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

        trainer.Trainer.save_state = save_then_fill_the_disk
        main(["train", "--preset", "tiny", "--stage", "aae", "--steps", "6", "--ckpt-every", "2",
              "--out", {str(tmp_path)!r}])
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    line = one_line_error(p, "could not write", str(tmp_path / "checkpoint.safetensors"), "previous file is unchanged")
    assert "File too large" in line
    meta = fsx.read_metadata(tmp_path / "checkpoint.safetensors", expected_format=None)
    assert meta["step"] == 2  # the checkpoint of step 2 is intact
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_ctrl_c_while_starting_exits_130(tmp_path):
    proc = fsx_in_a_terminal("train", "--out", tmp_path / "run", stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for _ in range(50):  # the start-up line comes before SynthFaces renders its 25,600 demo faces (warnings may precede it)
        line = proc.stderr.readline()
        if "preparing data" in line or not line:
            break
    assert "preparing data" in line
    proc.send_signal(signal.SIGINT)
    try:  # a lost SIGINT must fail here, not train the whole demo before the test sees EOF
        rest = proc.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        rest = proc.communicate()[1]
        pytest.fail(f"fsx train was still running 120 s after SIGINT; its stderr:\n{rest}")
    assert proc.returncode == 130, rest
    assert "interrupted while starting" in rest and "Traceback" not in rest
    left = [p.name for p in (tmp_path / "run").iterdir()] if (tmp_path / "run").exists() else []
    assert not set(left) & {"config.json", "metrics.jsonl", "samples"}, left  # "nothing new in OUT", as it says


def test_ctrl_c_before_the_first_step_stops_at_once_and_after_it_saves(tmp_path, monkeypatch, terminal_sigint):
    """A real SIGINT (or SIGTERM) to this process before its first step stops fit() at once with nothing saved; one
    after a step lets that step end and saves it; a second one at once is the same request; a second one later
    stops at once, saying that the step under way is lost."""
    from fsx.train import Trainer, TrainingInterrupted

    def trainer(out, signal_at, signals=1, signum=signal.SIGINT):
        tr = Trainer(make_config("tiny", steps={"aae": 4, "disentangle": 0, "joint": 0, "refit": 0}), out, progress=False)
        real_next = tr.schedule.next

        def next_batch(global_step):
            for _ in range(signals if global_step == signal_at else 0):
                os.kill(os.getpid(), signum)  # handled here, before the batch is read
            return real_next(global_step)

        tr.schedule.next = next_batch
        return tr

    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "first", signal_at=0).fit()
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM before this run's first step") as stopped:
        trainer(tmp_path / "first-term", signal_at=0, signum=signal.SIGTERM).fit()
    assert stopped.value.signum == signal.SIGTERM  # the CLI exits 143
    assert not list(tmp_path.glob("first*/checkpoint.safetensors"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit() gave the handlers back
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(TrainingInterrupted, match="interrupted at step 2 of stage aae"):
        trainer(tmp_path / "later", signal_at=1).fit()
    with pytest.raises(TrainingInterrupted, match="interrupted at step 2 of stage aae; saved"):
        trainer(tmp_path / "at-once", signal_at=1, signals=2).fit()
    os.kill(os.getpid(), signal.SIGINT)  # a repeat while the stopped run exits is still the same request: ignored
    monkeypatch.setattr("fsx.train.trainer.SAME_REQUEST_S", 0.0)  # the second signal as if it came seconds later
    with pytest.raises(KeyboardInterrupt):  # ... and a later one reaches the handler that was there before fit()
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(TrainingInterrupted, match="interrupted twice at step 2 of stage aae; that step was not "
                                                  "saved; no checkpoint was saved"):
        trainer(tmp_path / "twice", signal_at=1, signals=2).fit()
    for run in ("later", "at-once"):
        meta = fsx.read_metadata(tmp_path / run / "checkpoint.safetensors", expected_format="fsx-train-state")
        assert meta["global_step"] == 2
    assert not (tmp_path / "twice" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_before_a_new_runs_first_step_leaves_its_folder_as_found(tmp_path, monkeypatch, terminal_sigint,
                                                                        signum):
    """The Trainer writes config.json and metrics.jsonl once built; a real SIGINT (or SIGTERM) after that and
    before the first step leaves none of the run's files (the CLI says "nothing new in OUT"), and a user's own
    file stays."""
    from fsx.train.trainer import Trainer, TrainingInterrupted

    run_stage = Trainer._run_stage
    written = []

    def interrupted_stage(self, stage):
        written.extend(sorted(p.name for p in self.out.iterdir()))
        os.kill(os.getpid(), signum)  # the Trainer's handler raises at the next line: no step has run
        return run_stage(self, stage)

    monkeypatch.setattr(Trainer, "_run_stage", interrupted_stage)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt if signum == signal.SIGINT else TrainingInterrupted):
        train(make_config("tiny", steps={"aae": 4, "disentangle": 0, "joint": 0, "refit": 0}), out, progress=False)
    assert {"config.json", "metrics.jsonl", "samples"} <= set(written)  # there to be removed
    assert sorted(p.name for p in out.iterdir() if p.name != ".fsx.lock") == ["notes.txt"]
    monkeypatch.undo()
    train(make_config("tiny", steps={"aae": 1, "disentangle": 0, "joint": 0, "refit": 0}), out, progress=False)
    assert (out / "model.safetensors").exists()  # the same folder takes a new run without --force


FSX_01_CONFIG = Path(__file__).parent / "fixtures" / "fsx-0.1-tiny-config.json"  # written by fsx 0.1's tiny preset


def test_a_config_written_by_fsx_0_1_loads_as_todays_sections():
    """fsx 0.1 wrote 42 flat fields; they load into today's sections with the same values."""
    record = json.loads(FSX_01_CONFIG.read_text())
    assert "rec_weight" in record and "loss" not in record  # the fixture is the old format
    for key in ("sources", "labels"):
        record.pop(key)
    assert TrainConfig.from_dict(record) == make_config("tiny")


def test_fsx_0_1_phi_weight_is_folded_and_removed_options_say_what_changed():
    record = {k: v for k, v in json.loads(FSX_01_CONFIG.read_text()).items() if k not in ("sources", "labels")}
    cfg = TrainConfig.from_dict({**record, "phi_weight": 5.0, "lambda_rec_phi": 4.0, "task_weight": 2.0})
    assert (cfg.loss.rec_phi, cfg.loss.task, cfg.loss.cycle, cfg.loss.aug, cfg.loss.rec_phi_refit) == (20, 10, 5, 5, 1500)
    assert cfg.loss.rec == 1.0 and cfg.loss.lambda_ae == 0.9  # Eq. (5) was not under phi_weight
    with pytest.raises(ValueError, match=r"'latent_gan_weight' = 2.0 was removed .* it now always is 1.0"):
        TrainConfig.from_dict({**record, "latent_gan_weight": 2.0})
    with pytest.raises(ValueError, match=r"'cycle_trains' = \[\"G\", \"E\"\] was removed"):
        TrainConfig.from_dict({**record, "cycle_trains": ["G", "E"]})


def test_a_run_checkpointed_by_fsx_0_1_resumes(tmp_path):
    """A run folder whose config.json and checkpoint metadata hold fsx 0.1's flat configuration continues as the
    same run (and a removed option set in it stops the resume with one line that names it)."""
    from fsx.checkpoint import load_tensors, read_metadata, save_tensors
    from fsx.train.run_folder import STATE_FORMAT

    train(make_config("tiny"), tmp_path, progress=False)
    old = json.loads(FSX_01_CONFIG.read_text())
    ckpt = tmp_path / "checkpoint.safetensors"
    meta = read_metadata(ckpt, expected_format=STATE_FORMAT)
    old_config = {k: v for k, v in old.items() if k not in ("sources", "labels")}
    save_tensors(ckpt, load_tensors(ckpt), {**meta, "config": old_config})
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert load_run_config(tmp_path) == make_config("tiny")
    p = run_fsx("train", "--out", tmp_path, "--resume")
    assert p.returncode == 0, p.stderr
    save_tensors(ckpt, load_tensors(ckpt), {**meta, "config": {**old_config, "latent_gan_weight": 3.0}})
    one_line_error(run_fsx("train", "--out", tmp_path, "--resume"), "'latent_gan_weight' = 3.0 was removed")


def test_a_run_resumed_within_a_stage_finishes_that_stage_first(tmp_path):
    """A checkpoint taken within `decoder` while `refit` was still to come (earlier fsx versions ran `decoder` before
    `refit`) resumes by finishing `decoder` from the step it reached, then runs `refit`. The checkpoint's metadata is
    rewritten to that state: a checkpoint from the old order cannot be made with today's code."""
    from fsx.checkpoint import load_tensors, read_metadata, save_tensors
    from fsx.train.run_folder import STATE_FORMAT

    cfg = make_config("tiny", steps={"aae": 2, "disentangle": 0, "joint": 0, "refit": 2, "decoder": 3}, log_every=1)
    train(cfg, tmp_path, progress=False)
    ckpt = tmp_path / "checkpoint.safetensors"
    meta = read_metadata(ckpt, expected_format=STATE_FORMAT)
    save_tensors(ckpt, load_tensors(ckpt), {**meta, "stage": "decoder", "step": 1, "completed": ["aae"]})
    logged = len((tmp_path / "metrics.jsonl").read_text().splitlines())
    train(None, tmp_path, resume=True, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()[logged:]]
    steps = [(r["stage"], r["step"]) for r in rows if r.get("stage") in ("refit", "decoder") and "step" in r]
    assert steps[:2] == [("decoder", 2), ("decoder", 3)] and [s for s, _ in steps[2:]] == ["refit", "refit"], steps
