"""``fsx train`` as a real subprocess: stages, resume after kill -9, DDP on gloo, multi-source, NaN stop."""

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

import fsx
from conftest import fsx_in_a_terminal, kill_9_after_checkpoint, run_fsx
import pytest


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_each_stage_alone_produces_a_loadable_model(tmp_path):
    a, b, c, d, e = (tmp_path / n for n in "abcde")
    run_fsx("train", "--preset", "tiny", "--stage", "aae", "--out", a, check=True)
    run_fsx("train", "--preset", "tiny", "--stage", "disentangle", "--init", a / "model.safetensors", "--out", b, check=True)
    run_fsx("train", "--preset", "tiny", "--stage", "joint", "--init", b / "model.safetensors", "--out", c, check=True)
    run_fsx("train", "--preset", "tiny", "--stage", "refit", "--init", c / "model.safetensors", "--out", d,
            "--set", "loss.rec_phi_refit=30", check=True)
    run_fsx("train", "--preset", "tiny", "--stage", "decoder", "--steps", "3", "--init", c / "model.safetensors",
            "--out", e, check=True)
    expected_steps = {"aae": 4, "disentangle": 4, "joint": 2, "refit": 2, "decoder": 3}
    for run, stage in ((a, "aae"), (b, "disentangle"), (c, "joint"), (d, "refit"), (e, "decoder")):
        model = fsx.load(run / "model.safetensors")
        assert model.attributes == {"pose": 3, "identity": 32, "expression": 32, "style": 32}
        assert json.loads((run / "config.json").read_text())["stage"] == stage
        rows = metrics(run)
        assert rows and all(r["stage"] == stage and r["img_per_s"] > 0 for r in rows)
        assert (run / "samples" / f"{stage}-end-reconstructions.png").exists()
        assert model.metadata["steps"] == {stage: expected_steps[stage]}
    assert json.loads((d / "config.json").read_text())["loss"]["rec_phi_refit"] == 30
    # disentangle and refit train Phi on a frozen AAE, decoder G on a frozen E and Phi: the networks a stage holds
    # fixed are exactly those of the run it started from, and the one it trains moved
    for before, after, fixed, trained in ((a, b, ("aae.E.", "aae.G."), "disentangler."),
                                          (c, d, ("aae.E.", "aae.G."), "disentangler."),
                                          (c, e, ("aae.E.", "disentangler."), "aae.G.")):
        ta, tb = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
        for k in ta:
            if k.startswith(fixed):
                assert torch.equal(ta[k], tb[k]), k
        assert any(not torch.equal(ta[k], tb[k]) for k in ta if k.startswith(trained))
    with torch.no_grad():
        x = torch.rand(2, 3, 32, 32)
        out = fsx.load(c / "model.safetensors").transfer(x[:1], x, ["expression"])
    assert out.shape == (2, 3, 32, 32)


def test_metrics_have_every_loss_term_and_learning_rates(tmp_path):
    """Every term, and the parts of a task loss made of several (expression with its prototype term): the parts
    of each logged step add up to the attribute's task loss."""
    run_fsx("train", "--preset", "tiny", "--stage", "joint", "--option", "expression.prototype_weight=0.5",
            "--out", tmp_path, check=True)
    row = metrics(tmp_path)[-1]
    for key in ("loss/rec", "loss/adv", "loss/enc", "loss/gen", "loss/rec_phi", "loss/cyc", "loss/task_pose",
                "loss/aug_pose", "lr/eg", "lr/d", "lr/phi", "img_per_s", "loss/task_expression.prototype"):
        assert key in row, key
    parts = [k for k in row if k.startswith("loss/task_expression.")]
    assert len(parts) == 2 and row["loss/task_expression.prototype"] > 0
    assert sum(row[k] for k in parts) == pytest.approx(row["loss/task_expression"], rel=1e-5)
    assert not any(k.startswith(("loss/task_pose.", "loss/aug_expression.")) for k in row)  # parts of Eq. 7 only


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    """The cut run reads its batches through two DataLoader workers, the uninterrupted one in the loop: the
    prefetched batches must not move what a checkpoint resumes from, nor change a bit of the result. Both average
    E's and G's weights and clear the optimisers at the joint stage, so the checkpoint must carry the average; and
    their learning rates fall within the aae and joint stages, so a resumed step must run at its own step's rate."""
    args = ["train", "--preset", "tiny", "--steps", "12", "--ckpt-every", "2", "--seed", "5",
            "--set", "optim.ema_half_life=4", "--set", "optim.reset_at=joint", "--set", "optim.decay_at=aae,joint"]
    full = tmp_path / "full"
    run_fsx(*args, "--out", full, check=True)

    cut = tmp_path / "cut"
    args = [*args, "--workers", "2"]
    killed_at = kill_9_after_checkpoint(args, cut, 6)
    assert 6 <= killed_at < 48
    run_fsx(*args, "--out", cut, "--resume", check=True)
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [r["global_step"] for r in metrics(cut)]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 12 * 4  # aae, disentangle, joint, refit


@pytest.mark.slow
def test_nproc_2_gloo_writes_one_set_of_files(tmp_path):
    proc = run_fsx("train", "--preset", "tiny", "--steps", "2", "--nproc", "2", "--device", "cpu", "--workers", "1",
                   "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(tmp_path)
    assert [r["global_step"] for r in rows] == list(range(1, 9))  # 4 stages x 2 steps, one writer, not two
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "aae.safetensors", "checkpoint.safetensors", "disentangle.safetensors", "joint.safetensors", "model.safetensors",
        "refit.safetensors"]
    fsx.load(tmp_path / "model.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))


def test_label_partial_sources_apply_only_their_losses(tmp_path):
    proc = run_fsx("train", "--preset", "tiny", "--stage", "disentangle", "--steps", "4", "--attributes", "id,expr",
                   "--data", "ids=synthfaces:person,expr=synthfaces:valence+arousal+category", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(tmp_path)
    assert [r["sources"] for r in rows] == [["ids"], ["expr"], ["ids"], ["expr"]]
    for r in rows:
        tasks = {k for k in r if k.startswith(("loss/task_", "loss/aug_"))}
        if r["sources"] == ["ids"]:
            assert tasks == {"loss/task_identity", "loss/aug_identity"}
        else:
            assert tasks == {"loss/task_expression", "loss/aug_expression"}
        assert "loss/cyc" in r and "loss/rec_phi" in r  # unlabelled sub-vectors still take part in these


NAN_PLUGIN = """
import os

import attrs

from fsx.attributes import Attribute, Label
from fsx.plugins import hookimpl

CALLS = [0]


@attrs.frozen
class DivergesOnStep3:
    # An L1 loss that turns NaN from the third step on (its task and augmentation terms: two calls a step).
    def __call__(self, features, labels, generator=None):
        CALLS[0] += 1
        loss = (features[:, 0] - labels["light_x"].to(features)).abs().mean()
        diverges = CALLS[0] >= 5 and os.environ.get("RANK", "0") in os.environ.get("DIVERGING_RANKS", "0")
        return loss * float("nan") if diverges else loss


@hookimpl
def fsx_register_attributes():
    return [Attribute(name="diverging", dim=2, labels=(Label("light_x", "scalar"),), loss=DivergesOnStep3())]
"""


def test_a_non_finite_loss_stops_naming_the_term_and_keeps_the_last_checkpoint(tmp_path):
    """A plugin whose loss diverges on step 3 (made to, through the public plugin API) stops the run there."""
    from conftest import write_dist

    site = write_dist(tmp_path / "site", "fsx-diverging", "0.1.0", {"fsx_diverging": NAN_PLUGIN},
                      {"diverging": "fsx_diverging"})
    out = tmp_path / "run"
    proc = run_fsx("train", "--preset", "tiny", "--attributes", "pose,diverging", "--stage", "disentangle",
                   "--steps", "6", "--ckpt-every", "2", "--out", out, env_extra={"PYTHONPATH": str(site)})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "loss term 'task_diverging' is nan at step 3 of stage disentangle" in proc.stderr
    assert "checkpoint.safetensors" in proc.stderr and "Traceback" not in proc.stderr
    meta = fsx.read_metadata(out / "checkpoint.safetensors", expected_format="fsx-train-state")
    assert meta["step"] == 2
    assert not (out / "model.safetensors").exists()


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(tmp_path):
    """Rank 1's loss alone turns NaN: both ranks stop at the same step with the one-line error (once), no rank is
    left waiting for the other and no traceback is shown."""
    from conftest import write_dist

    site = write_dist(tmp_path / "site", "fsx-diverging", "0.1.0", {"fsx_diverging": NAN_PLUGIN},
                      {"diverging": "fsx_diverging"})
    out = tmp_path / "run"
    proc = run_fsx("train", "--preset", "tiny", "--attributes", "pose,diverging", "--stage", "disentangle",
                   "--steps", "6", "--ckpt-every", "2", "--nproc", "2", "--device", "cpu", "--workers", "0",
                   "--out", out, env_extra={"PYTHONPATH": str(site), "DIVERGING_RANKS": "1"}, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.count("loss term 'task_diverging' is nan at step 3 of stage disentangle") == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert fsx.read_metadata(out / "checkpoint.safetensors", expected_format="fsx-train-state")["step"] == 2


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    proc = run_fsx("train", "--preset", "tiny", "--resume", "--out", tmp_path)
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr


def wait_for_first_step(out, timeout: float = 300) -> None:
    """Until the run in ``out`` has logged its first step (its own signal handlers are in place by then)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.05)
    while time.time() < deadline and not (out / "metrics.jsonl").read_text().strip():
        time.sleep(0.05)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = fsx_in_a_terminal("train", "--preset", "tiny", "--steps", "400", "--ckpt-every", "1000", "--out", tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_first_step(tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at step" in err and "--resume" in err
    meta = fsx.read_metadata(tmp_path / "checkpoint.safetensors", expected_format="fsx-train-state")
    assert meta["global_step"] >= 1


def test_a_background_job_started_deaf_to_ctrl_c_trains_on_through_sigint(tmp_path):
    """A script's background job (`fsx train ... &`) starts with SIGINT ignored so that Ctrl-C in the script's
    terminal spares it; the run keeps that choice once training has begun, and ends as if never signalled."""
    proc = fsx_in_a_terminal("train", "--preset", "tiny", "--steps", "40", "--out", tmp_path, sigint="ignore",
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_first_step(tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "interrupted" not in err and (tmp_path / "model.safetensors").exists()


def test_sigterm_saves_a_checkpoint_and_exits_143_even_when_sent_twice_at_once(tmp_path):
    """A scheduler stops a job with SIGTERM (to every process of it, so a worker may get it twice at once): the
    run finishes its step, saves and exits 143; a second SIGTERM moments later is the same request."""
    proc = fsx_in_a_terminal("train", "--preset", "tiny", "--steps", "400", "--ckpt-every", "1000", "--out", tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_first_step(tmp_path)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM at step" in err and "--resume" in err and "twice" not in err
    meta = fsx.read_metadata(tmp_path / "checkpoint.safetensors", expected_format="fsx-train-state")
    assert meta["global_step"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_stops_every_rank_of_an_nproc_2_run_at_one_saved_step(tmp_path, how):
    """Ctrl-C reaches the launcher and both workers at once (a terminal signals the whole process group), and the
    launcher forwards it to the workers again; a scheduler's SIGTERM reaches the launcher alone, which forwards it.
    Either way both ranks stop after the same step, which is saved, with one line and no traceback."""
    proc = fsx_in_a_terminal("train", "--preset", "tiny", "--steps", "400", "--ckpt-every", "1000", "--nproc", "2",
                             "--device", "cpu", "--workers", "0", "--out", tmp_path, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_first_step(tmp_path)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    said = "interrupted" if how == "ctrl-c" else "stopped by SIGTERM"
    assert proc.returncode == (130 if how == "ctrl-c" else 143), err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(said)]
    assert len(lines) == 1 and "Traceback" not in err and "twice" not in err, err[-3000:]
    meta = fsx.read_metadata(tmp_path / "checkpoint.safetensors", expected_format="fsx-train-state")
    assert lines[0].startswith(f"{said} at step {meta['step']} of stage {meta['stage']}; saved ")
    assert [r["global_step"] for r in metrics(tmp_path)][-1] <= meta["global_step"]


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                         (False, True, "bf16")])
def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_it_natively(monkeypatch, avx512_bf16, amx, expected):
    """The CPU's instructions are what this machine has; the two checks torch makes are replaced to cover each case."""
    import torch

    from fsx.train.setup import resolve_precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # asked for by name: as asked, on any CPU
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.slow
def test_bf16_autocast_runs_on_cpu(tmp_path):
    """--precision bf16 runs the training steps' forward passes in bfloat16 (read from E's and G's outputs; bf16 is meant for GPUs, and CPU autocast goes through the same code here, where CI has no GPU), while
    the saved weights stay fp32; fp32 runs them in fp32."""
    import torch

    from fsx.train import Trainer, make_config
    from fsx.train.setup import resolve_precision

    auto = torch.bfloat16 if resolve_precision("auto", torch.device("cpu")) == "bf16" else torch.float32
    for precision, expected in (("bf16", torch.bfloat16), ("fp32", torch.float32), ("auto", auto)):
        out = tmp_path / precision
        tr = Trainer(make_config("tiny", steps={"aae": 1, "disentangle": 1, "joint": 1, "refit": 0},
                                 precision=precision, device="cpu"), out, progress=False)
        seen, in_step, step_of = set(), [False], tr.steps.of

        def of(stage):  # the trainer's step functions, marked while they run (not the grids drawn between them)
            def step(*args):
                in_step[0] = True
                try:
                    return step_of(stage)(*args)
                finally:
                    in_step[0] = False
            return step

        def record(module, inputs, output):
            if in_step[0]:
                seen.add(output.dtype)

        tr.steps.of = of
        for net in (tr.model.aae.E, tr.model.aae.G):
            net.register_forward_hook(record)
        tr.fit()
        assert seen == {expected}, (precision, seen)
        record = json.loads((out / "config.json").read_text())
        computed_in = {torch.bfloat16: "bf16", torch.float32: "fp32"}[expected]
        assert record["precision"] == precision and record["computed_in"] == computed_in
        assert all(t.dtype == torch.float32 for t in fsx.load(out / "model.safetensors").state_dict().values()
                   if t.is_floating_point())


def test_attribute_options_reach_the_loss_and_bad_ones_are_named(tmp_path):
    from fsx.train import Trainer, make_config

    tr = Trainer(make_config("tiny", attribute_options={"id": {"margin": 0.7}, "expression": {"weight": 2.0}}),
                 tmp_path, progress=False)
    by_name = {a.name: a for a in tr.attributes}
    assert by_name["identity"].loss.margin == 0.7 and by_name["expression"].weight == 2.0
    proc = run_fsx("train", "--preset", "tiny", "--option", "gaze.margin=1", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "'gaze'" in proc.stderr
    proc = run_fsx("train", "--preset", "tiny", "--option", "identity.marginn=1", "--out", tmp_path / "y")
    assert proc.returncode == 2 and "unknown option" in proc.stderr


@pytest.mark.slow
def test_set_reaches_each_section_once_and_names_unknown_or_flagged_options(tmp_path):
    """--set sets a section's option (loss.*, optim.*, model.*, synth.*) or an unflagged field; an option that has a
    flag is set only by its flag, and --set says which."""
    out = tmp_path / "run"
    run_fsx("train", "--preset", "tiny", "--stage", "aae", "--steps", "1", "--seed", "5", "--set", "loss.rec_phi=3",
            "--set", "optim.betas_phi=0.5,0.9", "--set", "model.phi_hidden=24", "--set", "mirror_p=0.0",
            "--width", "0.125", "--out", out, check=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["loss"]["rec_phi"] == 3 and cfg["optim"]["betas_phi"] == [0.5, 0.9] and cfg["seed"] == 5
    assert cfg["model"]["phi_hidden"] == 24 and cfg["model"]["width"] == 0.125 and cfg["mirror_p"] == 0.0
    assert cfg["model"]["latent_disc_hidden"] == 64  # the preset's, untouched by the other model options
    assert fsx.load(out / "model.safetensors").config.phi_hidden == 24
    proc = run_fsx("train", "--preset", "tiny", "--set", "loss.rec_ph=3", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "'loss.rec_ph' is not a training option" in proc.stderr
    for key, flag in (("seed=1", "--seed"), ("model.width=1", "--width"), ("steps={}", "--steps")):
        proc = run_fsx("train", "--preset", "tiny", "--set", key, "--out", tmp_path / "y")
        assert proc.returncode == 2 and f"has its own flag: use {flag}" in proc.stderr, proc.stderr


def test_steps_per_stage(tmp_path):
    out = tmp_path / "run"
    run_fsx("train", "--preset", "tiny", "--steps", "aae=2,joint=1", "--out", out, check=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps"] == {"aae": 2, "disentangle": 4, "joint": 1, "decoder": 0, "refit": 2}
    proc = run_fsx("train", "--preset", "tiny", "--steps", "aee=2", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "'aee' is not a stage" in proc.stderr


def test_preset_attribute_options_merge_with_the_callers_and_skip_untrained_attributes(tmp_path):
    from fsx.train import make_config

    demo = make_config("demo").attribute_options
    assert demo["pose"] == {"weight": 20.0} and demo["identity"] == {"objective": "contrastive"}
    assert demo["expression"] == {"objective": "contrastive", "weight": 10.0}
    # the caller's options (aliases allowed) merge into the preset's, option by option
    cfg = make_config("demo", attribute_options={"id": {"margin": 0.3}, "pose": {"scale": 0.1}})
    assert cfg.attribute_options["pose"] == {"weight": 20.0, "scale": 0.1}
    assert cfg.attribute_options["identity"] == {"objective": "contrastive", "margin": 0.3}
    assert make_config("mad", attribute_options={"expr": {"margin": 0.5}}).attribute_options["expression"] == {
        "weight": 2.0, "margin": 0.5}
    # a preset option for an attribute that is not trained is dropped instead of failing the run
    assert set(make_config("demo", attributes=("identity", "expr")).attribute_options) == {"identity", "expression"}
    assert make_config("demo", attributes=("pose",)).attribute_options == {"pose": {"weight": 20.0}}
    proc = run_fsx("train", "--preset", "demo", "--attributes", "id,expr", "--steps", "1", "--image-size", "32", "--width",
                   "0.0625", "--batch-size", "8", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


GRADIENT_WORKER = '''
import sys
import torch, torch.distributed as dist
from fsx.train.distributed import GradientAverager

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)  # the same weights on both ranks
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.Flatten(),
                          torch.nn.Linear(8 * 8 * 8, 4)).to(memory_format=torch.channels_last)
idle = torch.nn.Linear(4, 4)  # takes no part in the loss: left out, as on one process
model = torch.nn.ModuleDict({"net": net, "idle": idle})
averager = GradientAverager(model, 2, bucket_mb=0.001)  # small buckets: several are sent during backward
torch.manual_seed(1 + rank)  # each rank its own batch
x = torch.randn(5, 3, 12, 12).contiguous(memory_format=torch.channels_last)
loss = net(x).pow(2).mean()
reference = list(torch.autograd.grad(loss, list(net.parameters()), retain_graph=True))
for g in reference:
    dist.all_reduce(g)
    g /= 2
averager.start()
loss.backward()
averager.finish([net, idle])
assert averager.launched_in_backward >= 2, averager.launched_in_backward
assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(net.parameters(), reference))
assert all(p.grad is None for p in idle.parameters())
open(f"{sys.argv[1]}/ok-{rank}", "w").write(str(averager.launched_in_backward))  # both ranks share one stdout
dist.destroy_process_group()
'''


def test_gradients_are_averaged_in_buckets_sent_while_backward_runs(tmp_path):
    """Two gloo ranks with different batches: the bucketed, overlapped average equals an all-reduce of each
    gradient after backward, buckets leave during backward, and a module without gradients is left out."""
    script = tmp_path / "worker.py"
    script.write_text(GRADIENT_WORKER)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("ok-*")) == ["ok-0", "ok-1"]


def test_judge_every_logs_what_the_judge_reads_against_training_minutes(tmp_path):
    proc = run_fsx("train", "--preset", "tiny", "--steps", "aae=4,disentangle=0,joint=2,refit=0", "--judge-every", "2",
                   "--out", tmp_path, check=True)
    rows = [r for r in metrics(tmp_path) if "judge/ae/expression" in r]
    assert [(r["stage"], r["global_step"]) for r in rows] == [("aae", 2), ("aae", 4), ("joint", 6)]
    minutes = [r["minutes"] for r in rows]
    assert 0 < minutes[0] < minutes[1] < minutes[2]
    for r in rows:
        for who in ("x", "ae", "emb"):
            assert 0 <= r[f"judge/{who}/expression"] <= 1 and 0.3 <= r[f"judge/{who}/identity"] <= 1
            assert r[f"judge/{who}/pose_mae"] > 0
        assert r["judge/x/expression"] > 0.3  # the real pictures: far above chance (12.5%), even at 32 px
    assert proc.stderr.count("judge: G(E(x)) pose") == 3
    off = tmp_path / "off"
    run_fsx("train", "--preset", "tiny", "--steps", "aae=2,disentangle=0,joint=0,refit=0", "--judge-every", "0",
            "--out", off, check=True)
    assert not [r for r in metrics(off) if "judge/ae/expression" in r]


def test_the_training_judge_reads_a_perfect_autoencoder_as_the_pictures_themselves():
    """A stand-in model whose decodes are the input pictures (it only forwards them) must read exactly as x."""
    from fsx.train.judging import TrainingJudge

    class Perfect:
        device = torch.device("cpu")

        def eval(self):
            return self

        def autoencode(self, x):
            return x

        reconstruct = autoencode

    judge = TrainingJudge(64, n=64)
    values = judge(Perfect())
    for k in ("pose_mae", "expression", "identity"):
        assert values[f"judge/ae/{k}"] == values[f"judge/emb/{k}"] == values[f"judge/x/{k}"]
    assert values["judge/x/expression"] > 0.5
