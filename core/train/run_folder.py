"""The run folder: what ``fsx train --out DIR`` writes, and the rules that keep two runs from mixing in it.

A new run refuses a folder that holds one (``resume`` continues it, ``force`` replaces it: its files are removed
first, so nothing of the old run is left beside the new one); a resumed run must be configured as the run was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import attrs

from fsx.checkpoint import CheckpointError, atomic_write_bytes, read_metadata
from fsx.train.config import SECTIONS, TrainConfig
from fsx.train.stages import STAGES

STATE_FORMAT = "fsx-train-state"
# What a run writes; --force removes exactly these (anything else a user keeps there stays).
RUN_FILES = ("config.json", "metrics.jsonl", "skipped.txt", "checkpoint.safetensors", "model.safetensors",
             *(f"{stage}.safetensors" for stage in STAGES))
RUN_FOLDERS = ("samples", "tensorboard")
# Settings that change how a run is watched, not what it computes: a resumed run may change them.
BOOKKEEPING = ("log_every", "sample_every", "ckpt_every", "judge_every", "threads", "device", "workers")


class RunFolderError(ValueError):
    """``--out`` cannot hold this run (it is a file, lies under one, or holds another run)."""


def check_is_folder(out: Path) -> None:
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"lies under {p}, which is a file"
                raise RunFolderError(f"--out {out}: {what}, not a folder")
            return


def check_run_folder(out: Path, resume: bool, force: bool, rank0: bool = True) -> dict | None:
    """Check ``out`` before anything is computed; returns the run's configuration (a dict) when resuming."""
    check_is_folder(out)
    if resume:
        ckpt = out / "checkpoint.safetensors"
        if not ckpt.exists():
            started = " (a run that stopped before its first checkpoint: start it again with --force)" if any(
                (out / n).exists() for n in RUN_FILES) else ""
            raise CheckpointError(f"--resume: {ckpt} does not exist (nothing to resume in {out}){started}")
        meta = read_metadata(ckpt, expected_format=STATE_FORMAT)
        if not isinstance(meta.get("config"), dict):
            raise CheckpointError(f"{ckpt}: its metadata has no training configuration")
        return meta["config"]
    found = [n for n in RUN_FILES if (out / n).exists()]
    if found and rank0:  # other ranks wait for rank 0, which decides (and removes, with force)
        if not force:
            raise RunFolderError(
                f"--out {out} already holds a run ({', '.join(found)}); continue it with --resume, replace it with "
                f"--force, or choose another --out")
        clear_run(out)
    return None


def clear_run(out: Path) -> None:
    """Remove what a run writes in ``out`` (a user's own files there stay)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)


def run_config(out: Path, config: TrainConfig | None, resume: bool, force: bool, rank0: bool = True,
               bookkeeping: dict | None = None) -> TrainConfig:
    """The configuration a run goes on with, the one place that decides it: a new run's ``config``; on resume the
    run's own, with ``bookkeeping`` (``BOOKKEEPING`` settings, e.g. ``log_every``) on top where ``config`` is
    None, and otherwise ``config`` only where it equals the run's, bookkeeping aside."""
    saved = check_run_folder(out, resume, force, rank0)
    if not resume:
        if config is None:
            raise ValueError("train: a configuration is needed to start a new run")
        return config
    ran = TrainConfig.from_dict(saved)
    _check_recorded(out, ran)
    if config is None:
        return attrs.evolve(ran, **(bookkeeping or {}))
    differ = config_differences(ran, config)
    if differ:
        raise CheckpointError(
            f"--resume: the run in {out} was configured differently ({'; '.join(differ)}); resume it with its own "
            f"settings (give no options, or the same ones) or start a new run in another --out")
    return config


def _check_recorded(out: Path, ran: TrainConfig) -> None:
    """The folder's config.json says the same as the checkpoint about to be resumed: a hand-edited config.json, or
    a checkpoint copied in from another run, is refused rather than silently ignored and overwritten."""
    if not (out / "config.json").exists():
        return
    try:
        recorded = load_run_config(out)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"--resume: {exc}; fsx resumes from the checkpoint's own configuration: restore "
                              f"{out / 'config.json'} or remove it") from None
    differ = config_differences(ran, recorded)
    if differ:
        raise CheckpointError(
            f"--resume: {out / 'checkpoint.safetensors'} and {out / 'config.json'} describe different runs "
            f"({'; '.join(d.replace('(run)', '(checkpoint)').replace('(now)', '(config.json)') for d in differ)}); "
            f"config.json only records a run (edit nothing there), and a checkpoint resumes only in its own folder")


def _flat(config: TrainConfig) -> dict:
    """Field -> JSON value, a section's options as ``section.option``."""
    plain = json.loads(json.dumps(attrs.asdict(config)))
    out = {}
    for key, value in plain.items():
        if key in SECTIONS:
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def config_differences(run: TrainConfig, now: TrainConfig) -> list[str]:
    """``field: run value -> value now`` for every setting (bookkeeping aside) in which ``now`` differs."""
    a, b = _flat(run), _flat(now)
    return [f"{k}: {json.dumps(a[k])} (run) vs {json.dumps(b[k])} (now)"
            for k in a if k not in BOOKKEEPING and a[k] != b.get(k)]


def write_config(out: Path, config: TrainConfig, sources: dict, labels: dict, computed_in: str) -> None:
    """``config.json``: the resolved configuration; under ``sources`` each data source's size, labels and count of
    unreadable images; under ``labels`` each attribute's labelling sources and the labelled samples it trained on;
    under ``computed_in`` the precision the steps ran in (``precision`` "auto" resolved on the device of the run's
    latest start). ``load_run_config`` reads the configuration back."""
    record = dict(attrs.asdict(config), sources=sources, labels=labels, computed_in=computed_in)
    atomic_write_bytes(out / "config.json", (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def load_run_config(folder: str | Path) -> TrainConfig:
    """The TrainConfig of a run folder's ``config.json``."""
    path = Path(folder) / "config.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable run configuration ({exc})") from None
    for key in ("sources", "labels", "computed_in"):
        record.pop(key, None)
    return TrainConfig.from_dict(record)
