"""Everything a run is built from, in the order that makes it reproducible: the device and the seeds, the
configured attributes, the model, its optimisers, the data sources and the batch schedule, and the step functions.
The trainer and ``bench/train_step.py`` both start from :func:`build_run`."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from fsx.config import ModelConfig, NetworkConfig
from fsx.data.source import DataSource
from fsx.data.sources import labelling_sources, parse_sources
from fsx.model import FaceModel
from fsx.model_io import load
from fsx.plugins import get_registry
from fsx.train import distributed
from fsx.train.batches import BatchSchedule, LabelCounts
from fsx.train.config import TrainConfig
from fsx.train.run_log import preview_batch
from fsx.train.stages import build_optimizers
from fsx.train.steps import Steps


@attrs.define
class Run:
    """A built run: what the training loop drives."""

    config: TrainConfig
    device: torch.device
    gen: torch.Generator  # every random choice of the steps (shuffles, pairs); saved with each checkpoint
    attributes: list
    model: FaceModel
    optimizers: dict
    sources: list[DataSource]
    labelled_by: dict  # attribute -> the names of the sources that label it
    precision: str  # what the steps compute in: fp32 or bf16 (config.precision "auto" resolved on this device)
    preview: torch.Tensor  # the pictures of the sample grids
    schedule: BatchSchedule
    label_counts: LabelCounts
    steps: Steps


def pick_device(config: TrainConfig, local_rank: int = 0) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here; use --device cpu (or auto)")
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> "bf16" where ``device`` computes bf16 natively (a CUDA device that supports it, a CPU with
    AVX512-BF16 or AMX), else "fp32": on other CPUs autocast emulates bf16 and runs slower than fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    # torch.cpu's own checks of the CPU's instructions (private, hence looked up with a fallback)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return "bf16" if any(getattr(torch.cpu, name, lambda: False)() for name in checks) else "fp32"


def configured_attributes(config: TrainConfig, registry=None) -> list:
    """The run's attributes from the registry, each with its ``--option`` settings."""
    registry = registry or get_registry()
    attributes = [registry.get(n) for n in config.attributes]
    options = {registry.canonical(k): v for k, v in config.attribute_options.items()}
    stray = sorted(set(options) - {a.name for a in attributes})
    if stray:
        raise ValueError(f"--option for {stray}, which are not among the trained attributes {list(config.attributes)}")
    return [a.configure(**options[a.name]) if options.get(a.name) else a for a in attributes]


def initial_model(config: TrainConfig, attributes: list, init: str | Path | None = None, registry=None) -> FaceModel:
    """A new model, or the one in ``init`` (which must have the run's attributes, in order)."""
    if init is None:
        return FaceModel(ModelConfig.for_attributes(attributes, config.model), registry=registry)
    model = load(init, registry=registry)
    if list(model.attributes) != [a.name for a in attributes]:
        raise ValueError(f"--init {init}: its attributes {list(model.attributes)} differ from "
                         f"--attributes {[a.name for a in attributes]}")
    differ = [f"{f.name}: {getattr(model.config, f.name)!r} (init) vs {getattr(config.model, f.name)!r} (this run)"
              for f in attrs.fields(NetworkConfig) if getattr(model.config, f.name) != getattr(config.model, f.name)]
    if differ:  # training the init's networks while config.json records others would break --resume later
        raise ValueError(f"--init {init}: its networks differ from this run's ({'; '.join(differ)}); give the "
                         f"same --image-size, --width and --set model.* as the model it was trained with")
    return model


def build_run(config: TrainConfig, rank: int = 0, world: int = 1, local_rank: int = 0, init: str | Path | None = None,
              registry=None) -> Run:
    device = pick_device(config, local_rank)
    distributed.init(device, world)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed * 1009 + rank)
    gen = torch.Generator().manual_seed(config.seed * 7 + rank)
    attributes = configured_attributes(config, registry)
    model = initial_model(config, attributes, init, registry)
    model.to(device)  # in the layout FaceModel holds (channels_last, fsx.model says why); .to keeps it
    distributed.broadcast_weights(model, world)
    optimizers = build_optimizers(model, config)
    sources = parse_sources(config.data, model.image_size, seed=config.seed, persons=config.synth.persons,
                            clips=config.synth.clips, frames=config.synth.frames)
    labelled_by = labelling_sources(attributes, sources)  # before any rendering: fail fast
    for source in sources:  # render SynthFaces once, in a fixed order, so pixels never depend on batching
        source.warm_cache()
    # Read here, before any step, so that every run, fresh or resumed, with or without workers, has run the
    # (numba, OpenMP) renderer in this process before its first step: having run it moves later torch operations
    # onto another floating-point path (a stream with workers would otherwise first render here at a sample grid
    # or a judge reading, and a resumed run would differ from an uninterrupted one in the last bits).
    preview = preview_batch(sources[0])
    schedule = BatchSchedule(sources, attributes, max(2, config.batch_size // world), config.seed, rank,
                             config.mirror_p, gen, workers=config.workers, pin_memory=device.type == "cuda")
    label_counts = LabelCounts(attributes, sources, device, world)
    precision = resolve_precision(config.precision, device)
    autocast = None
    if precision == "bf16":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    steps = Steps(model, attributes, config, optimizers, gen, distributed.GradientAverager(model, world), autocast)
    return Run(config, device, gen, attributes, model, optimizers, sources, labelled_by, precision, preview, schedule,
               label_counts, steps)
