"""The run's state in OUT/checkpoint.safetensors: model, optimisers, position in the schedule and every rank's
random streams, written atomically; read back by ``--resume``."""

from __future__ import annotations

from pathlib import Path

import torch

from fsx.checkpoint import CheckpointError, load_tensors, read_metadata, save_tensors
from fsx.config import ModelConfig
from fsx.train.run_folder import STATE_FORMAT
from fsx.version import __version__


def write_state(path: Path, model, optimizers: dict, rank_states: list[dict], meta: dict,
                average: dict | None = None) -> None:
    """``meta`` holds the position (stage, step, ...); ``rank_states`` each rank's RNG and sampler tensors;
    ``average`` the state of the weights being averaged (``optim.ema_half_life``), if a stage is averaging."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"average/{k}": v for k, v in (average or {}).items()})
    groups = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        groups[name] = sd["param_groups"]
        for i, st in sd["state"].items():
            for k, v in st.items():
                tensors[f"optim/{name}/{i}/{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    for r, st in enumerate(rank_states):
        for k, v in st.items():
            tensors[f"rng/{r}/{k}"] = v
    save_tensors(path, tensors, {"format": STATE_FORMAT, "fsx_version": __version__, "optim_groups": groups,
                                 "world_size": len(rank_states), "model_config": model.config.to_dict(), **meta})


def _match_parameter_layout(opt: torch.optim.Optimizer) -> None:
    """Give each moment tensor its parameter's strides. A checkpoint stores tensors contiguous while the model trains
    in channels_last, and the fused Adam kernel reads a parameter and its moments as one flat layout: moments in
    another layout would be applied to the wrong elements (a resumed run would drift from an uninterrupted one)."""
    for param, st in opt.state.items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.shape == param.shape and v.stride() != param.stride():
                st[k] = torch.empty_like(param, dtype=v.dtype).copy_(v)


def read_state(path: Path, model, optimizers: dict, rank: int) -> tuple[dict, dict, dict]:
    """Load model and optimisers from ``path``; returns (its metadata, this rank's RNG and sampler tensors, the
    averaged weights' state or {})."""
    if not path.exists():
        raise CheckpointError(f"--resume: {path} does not exist (nothing to resume in {path.parent})")
    meta = read_metadata(path, expected_format=STATE_FORMAT)
    if ModelConfig.from_dict(meta["model_config"]) != model.config:  # e.g. another --init
        raise CheckpointError(f"{path}: the run's model differs from the one configured now; resume with the same options")
    tensors = load_tensors(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    for name, opt in optimizers.items():
        state: dict = {}
        prefix = f"optim/{name}/"
        for key, v in tensors.items():
            if key.startswith(prefix):
                i, k = key[len(prefix):].split("/", 1)
                state.setdefault(int(i), {})[k] = v
        opt.load_state_dict({"state": state, "param_groups": meta["optim_groups"][name]})
        _match_parameter_layout(opt)
    rank = rank if rank < meta["world_size"] else 0
    prefix = f"rng/{rank}/"
    rng = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return meta, rng, {k[len("average/"):]: v for k, v in tensors.items() if k.startswith("average/")}
