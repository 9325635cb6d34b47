"""The training loop behind ``fsx train``: stages, batch scheduling over sources, logging, sample grids,
atomic checkpoints, resume, non-finite-loss stops, Ctrl-C, and data parallelism over torch.distributed.

Data parallelism averages gradients with ``torch.distributed.all_reduce`` after each backward (NCCL on
GPUs, gloo on CPU) instead of wrapping the networks in ``DistributedDataParallel``: E and G run twice per
step (the cycle re-encodes generated images) and the discriminators alternate with the generators, which
DDP's one-forward-one-backward hooks do not allow.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import attrs
import torch
import torch.distributed as dist

import fsx
from fsx.checkpoint import CheckpointError, load_tensors, read_metadata, save_tensors
from fsx.config import ModelConfig
from fsx.data.sampling import BatchSampler
from fsx.data.sources import labelling_sources, parse_sources
from fsx.attributes.base import SamplerSpec
from fsx.model import FaceModel
from fsx.train.config import TrainConfig
from fsx.train.run_folder import STATE_FORMAT, check_run_folder, config_differences, write_config
from fsx.train.stages import STAGE_TABLE, build_optimizers, enter_stage
from fsx.train.steps import Steps

SKIPPED_SHOWN = 3  # unreadable images named on the console per source; all of them go to OUT/skipped.txt


class NonFiniteLossError(RuntimeError):
    def __init__(self, term: str, value: float, stage: str, step: int, checkpoint: Path | None):
        self.term, self.stage, self.step = term, stage, step
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written yet"
        super().__init__(f"loss term {term!r} is {value} at step {step} of stage {stage}; stopped ({kept})")


class TrainingInterrupted(RuntimeError):
    pass


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


class Trainer:
    def __init__(self, config: TrainConfig | None, out: str | Path, resume: bool = False,
                 init: str | Path | None = None, registry=None, progress: bool = True,
                 force: bool = False, report=None):
        from fsx.plugins import get_registry

        self.out = Path(out)
        self.rank, self.world, local_rank = _dist_info()
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self.checkpoint_path = self.out / "checkpoint.safetensors"
        saved = check_run_folder(self.out, resume, force, self.rank == 0)
        if resume:
            run_config = TrainConfig.from_dict(saved)
            if config is None:
                config = run_config
            differ = config_differences(run_config, config)
            if differ:
                raise CheckpointError(
                    f"--resume: the run in {self.out} was configured differently ({'; '.join(differ)}); resume it "
                    f"with its own settings (give no options, or the same ones) or start a new run in another --out")
        elif config is None:
            raise ValueError("train: a configuration is needed to start a new run")
        self.cfg = config
        if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed * 1009 + self.rank)
        self.gen = torch.Generator().manual_seed(config.seed * 7 + self.rank)

        registry = registry or get_registry()
        self.attributes = [registry.get(n) for n in config.attributes]
        options = {registry.canonical(k): v for k, v in config.attribute_options.items()}
        stray = sorted(set(options) - {a.name for a in self.attributes})
        if stray:
            raise ValueError(f"--option for {stray}, which are not among the trained attributes {list(config.attributes)}")
        self.attributes = [a.configure(**options[a.name]) if options.get(a.name) else a for a in self.attributes]
        if init is not None:
            self.model = fsx.load(init, registry=registry)
            if list(self.model.attributes) != [a.name for a in self.attributes]:
                raise ValueError(f"--init {init}: its attributes {list(self.model.attributes)} differ from "
                                 f"--attributes {[a.name for a in self.attributes]}")
        else:
            self.model = FaceModel(ModelConfig.for_attributes(
                self.attributes, image_size=config.image_size, width=config.width,
                latent_disc_hidden=config.latent_disc_hidden, phi_hidden=config.phi_hidden))
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        if self.world > 1:  # every rank starts from rank 0's weights
            for t in self.model.state_dict().values():
                dist.broadcast(t, 0)

        self.optimizers = build_optimizers(self.model, config)
        self.sources = parse_sources(config.data, self.model.image_size, seed=config.seed, persons=config.synth_persons,
                                     clips=config.synth_clips, frames=config.synth_frames)
        self.labelled_by = labelling_sources(self.attributes, self.sources)  # before any rendering: fail fast
        for source in self.sources:  # render SynthFaces once, in a fixed order, so pixels never depend on batching
            warm = getattr(getattr(source, "parent", None), "warm_cache", None)
            if warm is not None:
                warm()
        self.skips_reported = {s.name: 0 for s in self.sources}
        self.source_index = {s.name: j for j, s in enumerate(self.sources)}
        # labelled samples each attribute saw, per source: summed over ranks at each log step and checkpoint
        self.label_counts = torch.zeros(len(self.attributes), len(self.sources), dtype=torch.float64)
        self._pending_counts = torch.zeros_like(self.label_counts)
        self.samplers: dict[str, BatchSampler] = {}
        self.per_rank_batch = max(2, config.batch_size // self.world)
        autocast = None
        if config.precision == "bf16":
            dev = self.device.type
            autocast = lambda: torch.autocast(dev, dtype=torch.bfloat16)  # noqa: E731
        self.steps = Steps(self.model, self.attributes, config, self.optimizers, self.gen, self._sync, autocast)
        self.completed: list[str] = []
        self.stage, self.step, self.global_step = None, 0, 0
        self.progress = progress and self.rank == 0
        self.stop_requested = False
        self.last_checkpoint: Path | None = None
        self.writer = None
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "samples").mkdir(exist_ok=True)
        if resume:
            self._load_state()
        if self.rank == 0:
            for source in self.sources:
                self.report(f"data: {source!r}")
            for a in self.attributes:
                self.report(f"attribute {a.name}: labelled by {', '.join(self.labelled_by[a.name])}")
            self._report_skipped(resume)
            write_config(self.out, config, self.source_summary(), self.label_summary())
            self._open_metrics(resume)

    # --- what the data gave: labelled samples per attribute, unreadable inputs ----------------------
    def label_summary(self) -> dict:
        """Per attribute: the sources that label it and how many labelled samples of each it has trained on."""
        names = [s.name for s in self.sources]
        return {a.name: {"labelled_by": self.labelled_by[a.name],
                         "samples": {n: int(c) for n, c in zip(names, self.label_counts[i].tolist()) if c}}
                for i, a in enumerate(self.attributes)}

    def _count_labels(self, source: str, labels: dict) -> None:
        j = self.source_index[source]
        for i, a in enumerate(self.attributes):
            if a.has_labels(labels):
                self._pending_counts[i, j] += float(a.labelled_rows(labels).sum())

    def _merge_label_counts(self) -> None:
        """Add every rank's counts since the last merge to the totals (all ranks call this at the same steps)."""
        pending = self._pending_counts
        if self.world > 1:
            pending = pending.to(self.device)
            dist.all_reduce(pending)
        self.label_counts += pending.cpu()
        self._pending_counts.zero_()

    def source_summary(self) -> dict:
        """Per source: its size, the labels it offers and how many of its images could not be read (so far)."""
        return {s.name: {"images": len(s), "labels": sorted(s.labels), "skipped": len(getattr(s, "skipped", ()))}
                for s in self.sources}

    def _report_skipped(self, resume: bool = True) -> None:
        """Name unreadable images not reported yet: the first few per source on the console, all in skipped.txt.

        Folder sources read every image at start, real sources as their batches come; both are reported here."""
        if self.rank != 0:
            return
        path = self.out / "skipped.txt"
        if not resume and path.exists():
            path.unlink()
        for source in self.sources:
            skipped = getattr(source, "skipped", [])
            new = skipped[self.skips_reported[source.name]:]
            if not new:
                continue
            with open(path, "a") as fh:
                fh.writelines(f"{source.name}\t{line}\n" for line in new)
            shown = max(0, SKIPPED_SHOWN - self.skips_reported[source.name])
            self.skips_reported[source.name] = len(skipped)
            self.report(f"data: {source.name}: {len(skipped)} unreadable image(s) skipped so far; all are listed in {path}")
            for line in new[:shown]:
                self.report(f"  skipped: {line}")

    # --- scheduling ---------------------------------------------------------------------------------
    def _specs_for(self, source) -> list[SamplerSpec]:
        """The distinct grouped samplers of the attributes this source labels (random batches if none)."""
        specs = []
        for a in self.attributes:
            if a.sampler.is_grouped and a.has_labels(source.labels) and a.sampler not in specs:
                specs.append(a.sampler)
        return specs or [SamplerSpec()]

    def _next_batch(self):
        """Sources take turns; inside a source, the attributes' macro-batch kinds take turns (Sec. 3.9)."""
        si = self.global_step % len(self.sources)
        source = self.sources[si]
        specs = self._specs_for(source)
        ki = (self.global_step // len(self.sources)) % len(specs)
        key = f"{source.name}:{ki}"
        if key not in self.samplers:
            self.samplers[key] = BatchSampler(source.labels, specs[ki], self.per_rank_batch,
                                              seed=self.cfg.seed * 31 + si * 7 + ki, rank=self.rank)
        images, labels = source.get_batch(next(self.samplers[key]))
        return source.name, images, labels

    def _mirror(self, images: torch.Tensor, labels: dict) -> tuple[torch.Tensor, dict]:
        """Flip each sample with probability mirror_p; attributes say how their labels change."""
        if self.cfg.mirror_p <= 0:
            return images, labels
        flip = torch.rand(images.shape[0], generator=self.gen) < self.cfg.mirror_p
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        labels = dict(labels)
        for a in self.attributes:
            if a.mirror is not None and a.has_labels(labels):
                for key, value in a.mirror(labels).items():
                    mask = flip.view(-1, *[1] * (value.dim() - 1))
                    labels[key] = torch.where(mask, value, labels[key])
        return images, labels

    # --- distributed --------------------------------------------------------------------------------
    def _sync(self, modules) -> None:
        if self.world == 1:
            return
        # A module none of whose parameters got a gradient took no part in this step (e.g. D_x on a step of
        # d_x_every it skips, the same on every rank): it is left out, so that Adam skips it as on one process.
        modules = [m for m in modules if any(p.grad is not None for p in m.parameters())]
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch._utils._flatten_dense_tensors([p.grad for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        for p, g in zip(params, torch._utils._unflatten_dense_tensors(flat, [p.grad for p in params])):
            p.grad.copy_(g)

    def _sync_buffers(self) -> None:
        if self.world > 1:
            for b in self.model.buffers():
                dist.broadcast(b, 0)

    # --- the loop -----------------------------------------------------------------------------------
    def fit(self) -> Path | None:
        old = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        try:
            for stage in self.cfg.stages:
                if stage in self.completed:
                    continue
                self._run_stage(stage)
            return self._finish()
        finally:
            signal.signal(signal.SIGINT, old)
            if self.writer is not None:
                self.writer.close()

    def _on_sigint(self, signum, frame) -> None:
        if self.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_requested = True

    def _run_stage(self, stage: str) -> None:
        total = self.cfg.steps[stage]
        if self.stage != stage:
            self.stage, self.step = stage, 0
        enter_stage(self.model, STAGE_TABLE[stage])
        step_fn = getattr(self.steps, stage)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc=stage, unit="step", dynamic_ncols=True, leave=True,
                       disable=None, mininterval=1.0)
        sums, counts, t0, seen, used = {}, {}, time.perf_counter(), 0, []
        while self.step < total:
            source, images, labels = self._next_batch()
            self._count_labels(source, labels)
            if source not in used:
                used.append(source)
            images, labels = self._mirror(images, labels)
            xn = (images * 2 - 1).to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                xn = xn.contiguous(memory_format=torch.channels_last)
            labels = {k: v.to(self.device) for k, v in labels.items()}
            terms = step_fn(xn, labels, self.step)
            values = self._check_finite(terms)
            self._sync_buffers()
            self.step += 1
            self.global_step += 1
            seen += images.shape[0] * self.world
            for k, v in values.items():  # a term may be computed on some steps only (d_x_every, d_z_every)
                sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
            if self.step % self.cfg.log_every == 0 or self.step == total:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                self._merge_label_counts()
                self._report_skipped()
                self._log(stage, {k: s / counts[k] for k, s in sums.items()}, rate, bar, used)
                sums, counts, t0, seen, used = {}, {}, time.perf_counter(), 0, []
            if bar is not None:
                bar.update(1)
            if self.rank == 0 and (self.step % self.cfg.sample_every == 0):
                self.save_grids()
            if self.step % self.cfg.ckpt_every == 0 and self.step < total:
                self.save_state()
            if self.stop_requested:
                self.save_state()
                raise TrainingInterrupted(
                    f"interrupted at step {self.step} of stage {stage}; saved {self.checkpoint_path} "
                    f"(continue with --resume)")
        if bar is not None:
            bar.close()
        self.completed.append(stage)
        self.stage, self.step = None, 0
        if self.rank == 0:
            self.save_grids(tag=f"{stage}-end")
            fsx.save_model(self.model, self.out / f"{stage}.safetensors", **self._info())
        self.save_state()

    def _check_finite(self, terms: dict) -> dict:
        """Loss terms as floats (one device sync for all of them); a non-finite one stops the run."""
        names = list(terms)
        values = torch.stack([terms[n].detach().float() for n in names]).tolist()
        out = {}
        for name, v in zip(names, values):
            if not math.isfinite(v):
                raise NonFiniteLossError(name, v, self.stage, self.step + 1, self.last_checkpoint)
            out[name] = v
        return out

    # --- logging and pictures -----------------------------------------------------------------------
    def _open_metrics(self, resume: bool) -> None:
        path = self.out / "metrics.jsonl"
        if resume and path.exists():  # drop what was logged after the checkpoint we resumed from
            keep = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("global_step", 0) <= self.global_step]
            path.write_text("".join(line + "\n" for line in keep))
        elif not resume:
            path.write_text("")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        except Exception:  # tensorboard not installed: JSONL only
            self.writer = None

    def _log(self, stage: str, means: dict, rate: float, bar, sources: list) -> None:
        if self.rank != 0:
            return
        record = {"stage": stage, "step": self.step, "global_step": self.global_step, "img_per_s": round(rate, 2),
                  "sources": sources,
                  "skipped": {s.name: len(s.skipped) for s in self.sources if getattr(s, "skipped", None)}}
        record.update({f"loss/{k}": round(v, 6) for k, v in sorted(means.items())})
        record.update({f"lr/{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()})
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "global_step"):
                    self.writer.add_scalar(f"{stage}/{k}", v, self.global_step)
        if bar is not None:
            short = {k: f"{v:.3f}" for k, v in means.items() if k in ("rec", "adv", "rec_phi", "cyc") or k.startswith("task_")}
            bar.set_postfix(short | {"img/s": f"{rate:.0f}"}, refresh=False)
        if bar is None or bar.disable:
            print(f"[{stage} {self.step}/{self.cfg.steps[stage]}] " + " ".join(
                f"{k}={v:.4f}" for k, v in sorted(means.items())) + f" img/s={rate:.1f}", flush=True)

    @torch.no_grad()
    def save_grids(self, tag: str | None = None) -> None:
        """Reconstructions, random samples and one-attribute swaps of a fixed preview batch, as PNGs."""
        from torchvision.utils import save_image

        from fsx.eval.figures import reconstructions

        m, was = self.model, self.stage
        m.eval()
        images, _ = self.sources[0].get_batch(list(range(0, min(len(self.sources[0]), 8 * 37), 37))[:8])
        images = images.to(self.device)
        tag = tag or f"{was}-{self.step:06d}"
        save_image(reconstructions(m, images), self.out / "samples" / f"{tag}-reconstructions.png", nrow=8)
        save_image(m.generate(16, generator=torch.Generator().manual_seed(0)), self.out / "samples" / f"{tag}-samples.png", nrow=8)
        rows = [images]
        for name in m.attributes:  # row k: each face with the first face's sub-vector k
            rows.append(m.transfer(images[:1], images, [name]))
        save_image(torch.cat(rows), self.out / "samples" / f"{tag}-swaps.png", nrow=8)
        if was is not None:
            enter_stage(m, STAGE_TABLE[was])

    # --- state --------------------------------------------------------------------------------------
    def _info(self) -> dict:
        return {"data": self.cfg.data, "preset": self.cfg.preset, "seed": self.cfg.seed,
                "steps": {s: self.cfg.steps[s] for s in self.completed},
                "attribute_options": self.cfg.attribute_options, "sources": self.source_summary(),
                "labels": self.label_summary()}

    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "gen": self.gen.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        for key, s in self.samplers.items():
            state[f"sampler/{key}"] = s.state()
        return state

    def save_state(self) -> None:
        """Model, optimisers, step and every rank's RNG streams, atomically, to checkpoint.safetensors."""
        self._merge_label_counts()
        states = [self._rng_state()]
        if self.world > 1:
            states = [None] * self.world
            dist.all_gather_object(states, self._rng_state())
        if self.rank == 0:
            tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
            groups = {}
            for name, opt in self.optimizers.items():
                sd = opt.state_dict()
                groups[name] = sd["param_groups"]
                for i, st in sd["state"].items():
                    for k, v in st.items():
                        tensors[f"optim/{name}/{i}/{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
            for r, st in enumerate(states):
                for k, v in st.items():
                    tensors[f"rng/{r}/{k}"] = v
            meta = {"format": STATE_FORMAT, "fsx_version": fsx.__version__, "config": attrs.asdict(self.cfg),
                    "model_config": self.model.config.to_dict(), "stage": self.stage, "step": self.step,
                    "global_step": self.global_step, "completed": self.completed, "optim_groups": groups,
                    "world_size": self.world, "samplers": sorted(self.samplers),
                    "label_counts": self.label_counts.tolist()}
            save_tensors(self.checkpoint_path, tensors, meta)
            self.last_checkpoint = self.checkpoint_path
            write_config(self.out, self.cfg, self.source_summary(), self.label_summary())
        if self.world > 1:
            dist.barrier()

    def _load_state(self) -> None:
        path = self.checkpoint_path
        if not path.exists():
            raise CheckpointError(f"--resume: {path} does not exist (nothing to resume in {self.out})")
        meta = read_metadata(path, expected_format=STATE_FORMAT)
        if ModelConfig.from_dict(meta["model_config"]) != self.model.config:  # e.g. another --init
            raise CheckpointError(f"{path}: the run's model differs from the one configured now; resume with the same options")
        tensors = load_tensors(path)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        for name, opt in self.optimizers.items():
            state: dict = {}
            prefix = f"optim/{name}/"
            for key, v in tensors.items():
                if key.startswith(prefix):
                    i, k = key[len(prefix):].split("/", 1)
                    state.setdefault(int(i), {})[k] = v
            opt.load_state_dict({"state": state, "param_groups": meta["optim_groups"][name]})
        self.stage, self.step = meta["stage"], meta["step"]
        self.global_step, self.completed = meta["global_step"], list(meta["completed"])
        if "label_counts" in meta:
            self.label_counts = torch.tensor(meta["label_counts"], dtype=torch.float64)
        rank = self.rank if self.rank < meta["world_size"] else 0
        prefix = f"rng/{rank}/"
        rng = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        torch.set_rng_state(rng["torch"])
        self.gen.set_state(rng["gen"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        for key, st in rng.items():
            if key.startswith("sampler/"):
                skey = key[len("sampler/"):]
                name, ki = skey.rsplit(":", 1)
                si = self.source_index[name]
                spec = self._specs_for(self.sources[si])[int(ki)]
                self.samplers[skey] = BatchSampler(self.sources[si].labels, spec, self.per_rank_batch,
                                                   seed=0, rank=self.rank)
                self.samplers[skey].set_state(st)
        self.last_checkpoint = path

    def _finish(self) -> Path | None:
        path = None
        if self.rank == 0:
            path = self.out / "model.safetensors"
            fsx.save_model(self.model, path, **self._info())
            write_config(self.out, self.cfg, self.source_summary(), self.label_summary())
        if self.world > 1:
            dist.barrier()
        return path


def train(config: TrainConfig | None, out: str | Path, **kwargs) -> Path | None:
    """Run training as configured; returns the path of the final model (rank 0) and None on other ranks.

    ``resume=True`` continues the run in ``out`` (``config`` None: as it was configured; otherwise ``config`` must
    equal the run's, bookkeeping such as ``log_every`` aside); ``force=True`` replaces a run that is there."""
    trainer = Trainer(config, out, **kwargs)
    try:
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
