"""One process per output folder: fsx train and fsx prepare hold an OS lock on it; a second one is refused."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import fsx
from conftest import run_fsx
from fsx.folder_lock import LOCK_NAME, FolderBusyError, folder_lock


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_goes_with_it(tmp_path):
    with folder_lock(tmp_path, "fsx train"):
        with pytest.raises(FolderBusyError, match=rf"fsx train \(pid {os.getpid()}, started .*\)"):
            with folder_lock(tmp_path, "fsx prepare"):
                pass
    with folder_lock(tmp_path, "fsx prepare"):  # released at the end of the block
        pass


def test_a_folder_made_for_nothing_is_removed_and_a_used_one_kept(tmp_path):
    with pytest.raises(ValueError):
        with folder_lock(tmp_path / "new", "fsx train"):
            raise ValueError("the configuration was bad")
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "used", "fsx train"):
        (tmp_path / "used" / "config.json").write_text("{}")
    assert (tmp_path / "used" / "config.json").exists()


def test_kill_9_releases_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fsx.folder_lock import folder_lock\n"
                               f"with folder_lock({str(tmp_path)!r}, 'fsx train'):\n"
                               "    print('held', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):
        with folder_lock(tmp_path, "fsx train"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with folder_lock(tmp_path, "fsx train"):  # the kernel released it: no stale lock
        pass


@pytest.mark.slow
def test_two_trainings_into_one_folder_one_runs_the_other_is_refused(tmp_path):
    """The second `fsx train` (and a --force, and a --resume) started while the first runs exits 2 with one
    line naming the holder; the first ends as an uninterrupted run would, bit for bit."""
    args = ["train", "--preset", "tiny", "--steps", "aae=300,disentangle=4,joint=4,refit=0", "--seed", "2",
            "--ckpt-every", "1000"]
    run, alone = tmp_path / "run", tmp_path / "alone"
    first = subprocess.Popen([sys.executable, "-m", "fsx", *args, "--out", str(run)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.05)
    for extra in ([], ["--force"], ["--resume"]):
        proc = run_fsx(*args, "--out", run, *extra)
        if first.poll() is not None:
            pytest.skip("the first run ended before the second could meet it")
        assert proc.returncode == 2, (extra, proc.stderr[-2000:])
        lines = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "Traceback" not in proc.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    run_fsx(*args, "--out", alone, check=True)
    a, b = load_file(run / "model.safetensors"), load_file(alone / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (run / LOCK_NAME).exists()  # left in place (removing it could race a new holder): an empty file
    fsx.load(run / "model.safetensors")


def test_a_forked_worker_does_not_keep_the_lock_of_a_killed_parent(tmp_path):
    """DataLoader workers are forked with the trainer's descriptors; a worker that outlives its killed trainer
    must not hold the folder (it lets go of its copy when forked)."""
    holder = subprocess.Popen([sys.executable, "-c", "import os, sys, time; from fsx.folder_lock import folder_lock\n"
                               f"with folder_lock({str(tmp_path)!r}, 'fsx train'):\n"
                               "    child = os.fork()\n"
                               "    if child == 0:\n"
                               "        time.sleep(600)\n"
                               f"    open({str(tmp_path / 'child')!r}, 'w').write(str(child))\n"
                               "    print('held', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    try:
        with folder_lock(tmp_path, "fsx train"):  # the orphaned child is still alive, without the lock
            pass
    finally:
        os.kill(int((tmp_path / "child").read_text()), signal.SIGKILL)
