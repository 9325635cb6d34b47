import importlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# fsx's cache (the converted FID network) points at an empty folder for the whole session: a developer's own
# converted weights must not make every test evaluation compute FID. Subprocesses inherit it.
os.environ["FSX_CACHE"] = tempfile.mkdtemp(prefix="fsx-test-cache-")


def _onet_in_the_cache() -> None:
    """The demo preset's perceptual term reads ONet from $FSX_CACHE. Tests that train the demo exercise its code path,
    not ONet's trained weights (tests/test_perceptual_networks.py checks those, converted from the wheel), so the
    session's cache holds a seeded, untrained ONet in the real format and no test needs facenet-pytorch to run it."""
    import torch
    from safetensors.torch import save_file

    from fsx.onet import ONet, default_path

    with torch.random.fork_rng():  # the tests' own seeding is left as it was
        torch.manual_seed(0)
        state = ONet().state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(default_path()))


_onet_in_the_cache()
# Under pytest-xdist (``-n 2``) each worker computes on one thread, it and the CLI subprocesses it starts (which
# inherit the variables): two workers then share two cores instead of four threads contending for them, which slows
# torch's OpenMP loops several-fold.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def write_dist(site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
    """Install a package the way pip lays it out (module files + NAME-VERSION.dist-info with METADATA and
    entry_points.txt) into ``site``; ``importlib.metadata`` finds it like any installed package."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[fsx]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")
    return site


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A fresh site dir on sys.path (in-process) that tests install fake plugin distributions into."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def fsx_in_a_terminal(*args, sigint="default", **popen) -> subprocess.Popen:
    """Start the real ``fsx`` CLI as a shell in a terminal would: Ctrl-C (SIGINT) reaches it. A child inherits an
    ignored SIGINT, and a suite run as a script's background job (``pytest ... &``) has one, so it is reset here;
    ``sigint="ignore"`` starts it as such a background job instead."""
    disposition = {"default": signal.SIG_DFL, "ignore": signal.SIG_IGN}[sigint]
    return subprocess.Popen([sys.executable, "-m", "fsx", *map(str, args)], text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, disposition), **popen)


@pytest.fixture
def terminal_sigint():
    """SIGINT raises KeyboardInterrupt in this process, as in a terminal, whoever started pytest (a script's
    background job starts it with SIGINT ignored); the inherited handler is back afterwards."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def run_fsx(*args, env_extra=None, cwd=None, timeout=600, check=False):
    """Run the real ``fsx`` CLI in a subprocess (``python -m fsx``, the same entry point as the script)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-m", "fsx", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fsx {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_config(**kw):
    import fsx
    from fsx.plugins import get_registry

    attrs_ = get_registry().resolve(kw.pop("attributes", "pose,id,expr,style"))
    defaults = dict(image_size=32, width=0.125, latent_disc_hidden=32, phi_hidden=32)
    defaults.update(kw)
    return fsx.ModelConfig.for_attributes(attrs_, **defaults)


def random_inception(path: Path) -> Path:
    """The FID network's architecture with He-initialised random weights, as a safetensors file (stands in for the
    converted network, which only the FID test in test_eval_cli needs)."""
    import torch
    from safetensors.torch import save_file

    from fsx.eval.inception import InceptionFID

    torch.manual_seed(0)
    net = InceptionFID()
    for name, p in net.named_parameters():
        if name.endswith("weight"):
            torch.nn.init.kaiming_normal_(p)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def kill_9_after_checkpoint(args, out: Path, global_step: int) -> int:
    """Start ``fsx ARGS --out OUT``, SIGKILL it once its checkpoint has reached ``global_step``; returns the step the
    checkpoint it left holds."""
    import signal
    import time

    import fsx

    proc = subprocess.Popen([sys.executable, "-m", "fsx", *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        ckpt = out / "checkpoint.safetensors"
        try:
            if ckpt.exists() and fsx.read_metadata(ckpt, expected_format=None).get("global_step", 0) >= global_step:
                break
        except fsx.CheckpointError:
            # safetensors' torch reader opens the path twice (the header, then torch's UntypedStorage.from_file): a
            # checkpoint renamed into place between the two reads as one file's header with the other's size. Each
            # file on disk is whole (written aside, then renamed); only this poll, racing the writer, saw two.
            pass
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists()
    return fsx.read_metadata(out / "checkpoint.safetensors", expected_format=None)["global_step"]
