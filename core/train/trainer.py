"""The training loop behind ``fsx train``: run the configured stages over the batch schedule, stop cleanly on a
non-finite loss, Ctrl-C or SIGTERM, and keep the run folder (config, metrics, grids, checkpoints) current.

The pieces it is built from: ``stages`` (what each stage trains), ``steps`` (one step of each), ``batches`` (which
samples a step sees), ``state`` (checkpoints), ``run_log`` (metrics and grids), ``distributed`` (ranks)."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import attrs
import torch
import torch.distributed as dist

from fsx.folder_lock import folder_lock
from fsx.model import to_net
from fsx.model_io import save_model
from fsx.train import distributed
from fsx.train.code_prior import fit_code_prior
from fsx.train.config import TrainConfig
from fsx.train.judging import TrainingJudge, judge_line
from fsx.train.run_folder import check_is_folder, clear_run, run_config, write_config
from fsx.train.run_log import MetricsLog, save_grids
from fsx.train.setup import build_run
from fsx.train.stages import STAGE_TABLE, enter_stage, set_learning_rates
from fsx.train.state import read_state, write_state
from fsx.train.weight_average import WeightAverage

SKIPPED_SHOWN = 3  # unreadable images named on the console per source; all of them go to OUT/skipped.txt


class NonFiniteLossError(RuntimeError):
    def __init__(self, term: str, value: float, stage: str, step: int, checkpoint: Path | None):
        self.term, self.stage, self.step = term, stage, step
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written yet"
        super().__init__(f"loss term {term!r} is {value} at step {step} of stage {stage}; stopped ({kept})")


class TrainingInterrupted(RuntimeError):
    """A signal stopped the run; ``signum`` gives the conventional exit status, 128 + signum."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


# A second signal this soon after the first is the same request delivered twice: a terminal's Ctrl-C reaches
# torchrun and each of its workers, and torchrun then forwards it to them again (a scheduler's SIGTERM likewise).
SAME_REQUEST_S = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Trainer:
    """One run: built from a TrainConfig (or the run folder's, on resume), then ``fit()``."""

    def __init__(self, config: TrainConfig | None, out: str | Path, resume: bool = False,
                 init: str | Path | None = None, registry=None, progress: bool = True,
                 force: bool = False, report=None, bookkeeping: dict | None = None):
        self.out = Path(out)
        self.rank, self.world, local_rank = distributed.dist_info()
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self.checkpoint_path = self.out / "checkpoint.safetensors"
        self.cfg = run_config(self.out, config, resume, force, self.rank == 0, bookkeeping)
        run = build_run(self.cfg, self.rank, self.world, local_rank, init, registry)
        self.device, self.gen, self.attributes, self.model = run.device, run.gen, run.attributes, run.model
        self.optimizers, self.sources, self.labelled_by, self.preview = (run.optimizers, run.sources,
                                                                         run.labelled_by, run.preview)
        self.schedule, self.label_counts, self.steps = run.schedule, run.label_counts, run.steps
        self.precision = run.precision
        self.skips_reported = {s.name: 0 for s in self.sources}
        self.completed: list[str] = []
        self.stage, self.step, self.global_step = None, 0, 0
        self.elapsed = 0.0  # seconds spent in training steps, over every resume (the judge's curve is against it)
        self.judging = (self.cfg.judge_every > 0 and self.rank == 0 and any(s.exact for s in self.sources)
                        and sum(self.cfg.steps[s] for s in self.cfg.stages) >= self.cfg.judge_every)
        self.judge: TrainingJudge | None = None
        if self.judging:
            # Built and read once here, before any step, in every process of a run that judges (fresh or
            # resumed): a judge reading moves the process's later torch operations onto another floating-point
            # path, so a run resumed after a reading would otherwise differ in the last bits from one that ran
            # through it (a kill -9 soak found it). Before the checkpoint's RNG state is restored.
            self.judge = TrainingJudge(self.model.image_size, seed=0)
            self.judge(self.model)
        self.progress = progress and self.rank == 0
        self.stop_requested = 0  # the signal that asked the run to stop after the step under way
        self.stop_requested_at = 0.0
        self.fit_from = 0  # the global step this process's fit() started from
        self.average = None  # E's and G's averaged weights while a stage that trains them runs (ema_half_life)
        self.last_checkpoint: Path | None = None
        self.log: MetricsLog | None = None
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "samples").mkdir(exist_ok=True)
        if resume:
            self._load_state()
        if self.rank == 0:
            if self.cfg.precision == "auto":
                self.report(f"precision: {self.precision} (auto: {'' if self.precision == 'bf16' else 'no '}native bf16 "
                            f"on this {self.device.type.upper()})")
            for source in self.sources:
                self.report(f"data: {source!r}")
            for a in self.attributes:
                self.report(f"attribute {a.name}: labelled by {', '.join(self.labelled_by[a.name])}")
            self._report_skipped(resume)
            write_config(self.out, self.cfg, self.source_summary(), self.label_summary(), self.precision)
            self.log = MetricsLog(self.out, resume, self.global_step, self.report)

    # --- what the data gave: labelled samples per attribute, unreadable inputs ----------------------
    def label_summary(self) -> dict:
        return self.label_counts.summary(self.labelled_by)

    def source_summary(self) -> dict:
        """Per source: its size, the labels it offers and how many of its images could not be read (so far)."""
        return {s.name: {"images": len(s), "labels": sorted(s.labels), "skipped": len(s.skipped)}
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
            skipped = source.skipped
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

    # --- the loop -----------------------------------------------------------------------------------
    def fit(self) -> Path | None:
        self.fit_from = self.global_step
        # A script's background job (`fsx train ... &`) starts deaf to Ctrl-C; an ignored signal stays ignored.
        inherited = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        for s, handler in inherited.items():
            if handler is not signal.SIG_IGN:
                signal.signal(s, self._on_signal)
        try:
            pending = [s for s in self.cfg.stages if s not in self.completed]
            if self.stage in pending:  # resumed within a stage: finish it first (a later fsx may order stages anew)
                pending.insert(0, pending.pop(pending.index(self.stage)))
            for stage in pending:
                self._run_stage(stage)
            return self._finish()
        finally:
            self.schedule.close()
            for s, handler in inherited.items():
                if handler is not signal.SIG_IGN:
                    signal.signal(s, _AfterStop(handler, self.stop_requested_at) if self.stop_requested else handler)
            if self.log is not None:
                self.log.close()

    def _on_signal(self, signum, frame) -> None:
        # Ctrl-C (SIGINT) or a scheduler's SIGTERM: finish the step under way, save, stop. One before this process
        # finished a step stops now: there is nothing to save, so waiting for that step would buy nothing. A
        # second one stops now too, without the step under way.
        if self.global_step == self.fit_from:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name} before this run's first step; "
                                      f"nothing new was trained", signum)
        if self.stop_requested:
            if time.monotonic() - self.stop_requested_at < SAME_REQUEST_S:
                return
            saved = (f"{self.last_checkpoint} holds the last checkpoint (continue with --resume)"
                     if self.last_checkpoint else "no checkpoint was saved (start again with --force)")
            raise TrainingInterrupted(f"{_stopped(signum)} twice at step {self.step + 1} of stage {self.stage}; "
                                      f"that step was not saved; {saved}", signum)
        self.stop_requested, self.stop_requested_at = signum, time.monotonic()

    def _start_stage(self, stage: str) -> None:
        """Before the stage's first step (a run resumed within a stage keeps its moments and its average)."""
        self.stage, self.step = stage, 0
        if stage in self.cfg.optim.reset_at:
            for optimizer in self.optimizers.values():
                optimizer.state.clear()
        self.average = WeightAverage.for_stage(self.model, STAGE_TABLE[stage], self.cfg.optim.ema_half_life)

    def _end_stage(self, stage: str) -> None:
        if self.average is not None:  # the stage ends on the averaged weights (the buffers are the live ones)
            self.average.apply()
            self.average = None
        if "aae.E" in STAGE_TABLE[stage].trains:  # the codes that generate() draws from moved with E
            fit_code_prior(self.model, self.sources, self.cfg.seed)
        self.completed.append(stage)
        self.stage, self.step = None, 0
        if self.rank == 0:
            self.save_grids(tag=f"{stage}-end")
            save_model(self.model, self.out / f"{stage}.safetensors", **self._info())
        self.save_state()

    def _run_stage(self, stage: str) -> None:
        total = self.cfg.steps[stage]
        if self.stage != stage:
            self._start_stage(stage)
        enter_stage(self.model, STAGE_TABLE[stage])
        step_fn = self.steps.of(stage)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc=stage, unit="step", dynamic_ncols=True, leave=True,
                       disable=None, mininterval=1.0)
        sums, counts, t0, seen, used = {}, {}, time.perf_counter(), 0, []
        while self.step < total:
            t_step = time.perf_counter()
            source, images, labels = self.schedule.next(self.global_step)
            self.label_counts.add(source, labels)
            if source not in used:
                used.append(source)
            xn = to_net(images).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = {k: v.to(self.device) for k, v in labels.items()}
            self.steps.at(stage, self.step)
            set_learning_rates(self.optimizers, self.cfg, stage, self.step)
            terms = step_fn(xn, labels, self.step)
            values, stop = self._agree(terms)
            distributed.broadcast_buffers(self.model, self.world)
            if self.average is not None:
                self.average.update()
            self.step += 1
            self.global_step += 1
            self.elapsed += time.perf_counter() - t_step
            seen += images.shape[0] * self.world
            for k, v in values.items():  # a term may be computed on some steps only (d_x_every, d_z_every)
                sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
            if self.step % self.cfg.log_every == 0 or self.step == total:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                self.label_counts.merge()
                self._report_skipped()
                self._log(stage, {k: s / counts[k] for k, s in sums.items()}, rate, bar, used)
                sums, counts, t0, seen, used = {}, {}, time.perf_counter(), 0, []
            if bar is not None:
                bar.update(1)
            if self.rank == 0 and (self.step % self.cfg.sample_every == 0):
                self.save_grids()
            if self.judging and self.global_step % self.cfg.judge_every == 0:
                self.judge_now(bar)
            if self.step % self.cfg.ckpt_every == 0 and self.step < total:
                self.save_state()
            if stop:
                self.save_state()
                raise TrainingInterrupted(
                    f"{_stopped(stop)} at step {self.step} of stage {stage}; saved {self.checkpoint_path} "
                    f"(continue with --resume)", stop)
        if bar is not None:
            bar.close()
        self._end_stage(stage)

    def _agree(self, terms: dict) -> tuple[dict, int]:
        """The step's loss terms as floats, averaged over ranks, and the signal (if any) that asks every rank to
        stop, in one all-reduce and one device sync. Every rank so takes both decisions at the same step: a
        non-finite term stops them all (one rank's NaN reaches every rank's weights through the averaged gradients
        anyway), and so does a signal that reached some ranks only, or reached them during different steps."""
        names = list(terms)
        t = torch.stack([terms[n].detach().float() for n in names])
        if self.world > 1:  # one process needs no agreement: the step adds no tensor beyond its losses
            asked = torch.tensor([float(self.stop_requested == s) for s in STOP_SIGNALS], device=self.device)
            t = torch.cat([t, asked])
            dist.all_reduce(t)
            t[:len(names)] /= self.world
        values = t.tolist()
        for name, v in zip(names, values):
            if not math.isfinite(v):
                raise NonFiniteLossError(name, v, self.stage, self.step + 1, self.last_checkpoint)
        stop = (max((s for s, n in zip(STOP_SIGNALS, values[len(names):]) if n > 0), default=0) if self.world > 1
                else self.stop_requested)
        return dict(zip(names, values)), stop

    # --- logging and pictures -----------------------------------------------------------------------
    def _log(self, stage: str, means: dict, rate: float, bar, sources: list) -> None:
        if self.rank != 0:
            return
        record = {"stage": stage, "step": self.step, "global_step": self.global_step, "img_per_s": round(rate, 2),
                  "sources": sources,
                  "skipped": {s.name: len(s.skipped) for s in self.sources if s.skipped}}
        record.update({f"loss/{k}": round(v, 6) for k, v in sorted(means.items())})
        record.update({f"lr/{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()})
        self.log.write(record, means, self.cfg.steps[stage], rate, bar)

    def judge_now(self, bar=None) -> dict:
        """The judge's readings of G(E(x)) and G(Phi^-1(Phi(E(x)))) now, logged with the training minutes."""
        values = self.judge(self.model)
        enter_stage(self.model, STAGE_TABLE[self.stage])
        record = {"stage": self.stage, "step": self.step, "global_step": self.global_step,
                  "minutes": round(self.elapsed / 60, 3), **values}
        self.log.write_judge(record)
        line = f"[{self.stage} {self.step}, {self.elapsed / 60:.1f} min] {judge_line(values)}"
        if bar is not None and not bar.disable:
            bar.write(line, file=sys.stderr)
        else:
            self.report(line)
        return values

    def save_grids(self, tag: str | None = None) -> None:
        save_grids(self.model, self.preview, self.out / "samples", tag or f"{self.stage}-{self.step:06d}")
        if self.stage is not None:
            enter_stage(self.model, STAGE_TABLE[self.stage])

    # --- state --------------------------------------------------------------------------------------
    def _info(self) -> dict:
        return {"data": self.cfg.data, "preset": self.cfg.preset, "seed": self.cfg.seed,
                "steps": {s: self.cfg.steps[s] for s in self.completed},
                "attribute_options": self.cfg.attribute_options, "sources": self.source_summary(),
                "labels": self.label_summary()}

    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "gen": self.gen.get_state(), **self.schedule.state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_state(self) -> None:
        """Model, optimisers, step and every rank's RNG streams, atomically, to checkpoint.safetensors."""
        self.label_counts.merge()
        states = [self._rng_state()]
        if self.world > 1:
            states = [None] * self.world
            dist.all_gather_object(states, self._rng_state())
        if self.rank == 0:
            write_state(self.checkpoint_path, self.model, self.optimizers, states, {
                "config": attrs.asdict(self.cfg), "stage": self.stage, "step": self.step,
                "global_step": self.global_step, "completed": self.completed, "elapsed_s": self.elapsed,
                "samplers": sorted(self.schedule.samplers), "label_counts": self.label_counts.total.tolist()},
                average=self.average.state_dict() if self.average is not None else None)
            self.last_checkpoint = self.checkpoint_path
            write_config(self.out, self.cfg, self.source_summary(), self.label_summary(), self.precision)
        if self.world > 1:
            dist.barrier()

    def _load_state(self) -> None:
        meta, rng, average = read_state(self.checkpoint_path, self.model, self.optimizers, self.rank)
        self.stage, self.step = meta["stage"], meta["step"]
        if self.stage is not None:  # within a stage: its average so far
            self.average = WeightAverage.for_stage(self.model, STAGE_TABLE[self.stage], self.cfg.optim.ema_half_life)
            if self.average is not None:
                self.average.load_state_dict(average)
        self.global_step, self.completed = meta["global_step"], list(meta["completed"])
        self.elapsed = float(meta.get("elapsed_s", 0.0))
        if "label_counts" in meta:
            self.label_counts.total = torch.tensor(meta["label_counts"], dtype=torch.float64)
        torch.set_rng_state(rng["torch"])
        self.gen.set_state(rng["gen"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.schedule.restore(rng)
        self.last_checkpoint = self.checkpoint_path

    def _finish(self) -> Path | None:
        path = None
        if self.rank == 0:
            path = self.out / "model.safetensors"
            save_model(self.model, path, **self._info())
            write_config(self.out, self.cfg, self.source_summary(), self.label_summary(), self.precision)
        if self.world > 1:
            dist.barrier()
        return path


class _AfterStop:
    """The handler left in place once a signal has stopped the run: its repeats within SAME_REQUEST_S are the same
    request (they must not kill a process that is saying why it stopped); any later signal goes to the handler that
    was there before ``fit()``, which is put back."""

    def __init__(self, inherited, stopped_at: float):
        self.inherited, self.stopped_at = inherited, stopped_at

    def __call__(self, signum, frame):
        if time.monotonic() - self.stopped_at < SAME_REQUEST_S:
            return
        signal.signal(signum, self.inherited)
        if callable(self.inherited):
            return self.inherited(signum, frame)
        os.kill(os.getpid(), signum)  # SIG_DFL: the default action, now that it is back


def _stopped(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def train(config: TrainConfig | None, out: str | Path, **kwargs) -> Path | None:
    """Run training as configured; returns the path of the final model (rank 0) and None on other ranks.

    ``resume=True`` continues the run in ``out`` (``config`` None: as it was configured; otherwise ``config`` must
    equal the run's, bookkeeping such as ``log_every`` aside); ``force=True`` replaces a run that is there."""
    rank, _, _ = distributed.dist_info()
    check_is_folder(Path(out))  # a file, or a path under one: said as such before the lock makes the folder
    resuming_nothing = kwargs.get("resume") and not Path(out).is_dir()  # say so without creating the folder
    hold = folder_lock(out, "fsx train") if rank == 0 and not resuming_nothing else nullcontext()
    with hold:
        trainer = None
        try:
            trainer = Trainer(config, out, **kwargs)
            return trainer.fit()
        except (KeyboardInterrupt, TrainingInterrupted):
            if rank == 0 and not kwargs.get("resume") and (trainer is None or trainer.global_step == 0):
                clear_run(Path(out))  # nothing was trained: the folder is left as this new run found it
            raise
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
