"""The benchmark scripts run (their numbers are measurements, not assertions): a bench that no longer starts
would go unnoticed until someone needs it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_step_bench_builds_the_run_as_the_trainer_does_and_prints_a_row_per_stage():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "train_step.py"), "--preset", "tiny", "--sizes", "32",
                           "--widths", "0.125", "--batch", "8", "--repeats", "1", "--stages", "aae,joint"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:2] == ["32", "0.125"]]
    assert [r[2] for r in rows] == ["aae", "joint"] and all(float(r[3]) > 0 for r in rows), proc.stdout
    assert "; fp32 GEMM peak" in proc.stdout.splitlines()[0], proc.stdout  # the tiny preset's precision, as fsx train's


@pytest.mark.slow
def test_train_step_bench_times_a_changed_setting_beside_the_base_and_names_a_bad_one():
    bench = [sys.executable, str(ROOT / "bench" / "train_step.py"), "--preset", "tiny", "--sizes", "32", "--widths",
             "0.125", "--batch", "8", "--repeats", "1", "--stages", "joint"]
    proc = subprocess.run(bench + ["--vs", "loss.rec_perceptual=0.1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:2] == ["32", "0.125"]]
    assert [(r[2], r[-1]) for r in rows] == [("joint", "base"), ("joint", "loss.rec_perceptual=0.1")], proc.stdout
    assert float(rows[0][-2]) == 1.0 and float(rows[1][-2]) > 0
    # the setting reached the step: the perceptual CNN adds work to every image's step
    assert float(rows[1][6]) > float(rows[0][6]), proc.stdout  # GFLOP/img

    bad = subprocess.run(bench + ["--vs", "loss.no_such_term=1"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "no_such_term" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_model_api_bench_times_a_loaded_model_in_both_layouts(tmp_path):
    import json

    import torch

    import fsx
    from conftest import tiny_config

    torch.manual_seed(0)
    fsx.save_model(fsx.FaceModel(tiny_config()).eval(), tmp_path / "m.safetensors")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "model_api.py"), str(tmp_path / "m.safetensors"),
                           "--images", "8", "--batch", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    for name in ("encode", "autoencode", "reconstruct", "transfer", "generate"):
        assert out[name]["channels_last"] > 0 and out[name]["nchw"] > 0, out
        assert out[name]["max_abs_difference"] < 1e-3, out  # the same pictures, up to float rounding
