"""What each training step sees: sources taking turns, each attribute's macro-batch kind (Sec. 3.9), mirroring,
and how many labelled samples each attribute has trained on.

Indices are drawn in the main process, in step order, by samplers whose state is checkpointed; with ``workers``
> 0 a ``torch.utils.data.DataLoader`` reads the pictures of the coming steps in worker processes (pinned memory
when training on a GPU), and the checkpointed sampler state is the one after the last batch *used*, not the last
one prefetched, so a resumed run sees the same batches whatever the number of workers.
"""

from __future__ import annotations

from collections import deque

import torch
from torch.utils.data import DataLoader, Dataset

from fsx.attributes.base import SamplerSpec
from fsx.data.sampling import BatchSampler
from fsx.train import distributed


class _SourceBatches(Dataset):
    """(source index, sample indices) -> that source's batch, and the unreadable files met reading it (a worker's
    copy of a source cannot tell the main process otherwise)."""

    def __init__(self, sources):
        self.sources = sources

    def __getitem__(self, key):
        si, indices = key
        source = self.sources[si]
        before = len(source.skipped)
        images, labels = source.get_batch(indices)
        # labels as numpy arrays travel in the one pickled message; as tensors each would take a shared-memory
        # segment of its own (SynthFaces has ~50 label fields: 10-20x slower batches)
        return si, images, {k: v.numpy() for k, v in labels.items()}, list(source.skipped[before:])


def _as_is(item):
    return item


class _Keys:
    """The (source index, indices) of each step from ``start`` on, drawn when the DataLoader asks for them."""

    def __init__(self, schedule: "BatchSchedule", start: int):
        self.schedule, self.start = schedule, start

    def __iter__(self):
        step = self.start
        while True:
            yield self.schedule.draw(step)
            step += 1


class BatchSchedule:
    """Sources take turns by global step; inside a source, the grouped samplers of the attributes it labels take
    turns (random batches if it labels none). Every sampler's position is part of the checkpoint."""

    def __init__(self, sources, attributes, batch: int, seed: int, rank: int, mirror_p: float, generator,
                 workers: int = 0, pin_memory: bool = False):
        self.sources, self.attributes, self.batch = sources, attributes, batch
        self.seed, self.rank, self.mirror_p, self.gen = seed, rank, mirror_p, generator
        self.index = {s.name: j for j, s in enumerate(sources)}
        self.specs = {s.name: self._specs_for(s) for s in sources}  # fixed for the run: worked out once
        self.samplers: dict[str, BatchSampler] = {}
        self.workers, self.pin_memory = workers, pin_memory
        self._batches = None  # the DataLoader's iterator, started at the first step (after any restore)
        self._drawn: deque = deque()  # (step, sampler states after drawing it), for the steps prefetched
        self._used_state: dict | None = None  # sampler states after the last batch used

    def _specs_for(self, source) -> list[SamplerSpec]:
        specs = []
        for a in self.attributes:
            if a.sampler.is_grouped and a.has_labels(source.labels) and a.sampler not in specs:
                specs.append(a.sampler)
        return specs or [SamplerSpec()]

    def _sampler(self, key: str, seed: int) -> BatchSampler:
        if key not in self.samplers:
            name, ki = key.rsplit(":", 1)
            source = self.sources[self.index[name]]
            self.samplers[key] = BatchSampler(source.labels, self.specs[name][int(ki)], self.batch,
                                              seed=seed, rank=self.rank)
        return self.samplers[key]

    def draw(self, global_step: int) -> tuple[int, list[int]]:
        """The source and sample indices of a step (advancing that source's sampler)."""
        si = global_step % len(self.sources)
        source = self.sources[si]
        ki = (global_step // len(self.sources)) % len(self.specs[source.name])
        indices = next(self._sampler(f"{source.name}:{ki}", seed=self.seed * 31 + si * 7 + ki))
        indices = source.at_step(global_step, indices)  # a stream renders each step's own persons
        if self.workers:
            self._drawn.append((global_step, self._sampler_states()))
        return si, indices

    def next(self, global_step: int) -> tuple[str, torch.Tensor, dict]:
        if not self.workers:
            si, indices = self.draw(global_step)
            images, labels = self.sources[si].get_batch(indices)
            return (self.sources[si].name, *self.mirror(images, labels))
        if self._batches is None:
            self._used_state = self._sampler_states()
            # Workers that render (a SynthFaces stream) are started fresh ("spawn"): the compiled renderer runs on
            # GNU OpenMP, which aborts a forked child once the parent has used it (the parent renders its preview
            # pictures, the judge's, or a notebook's grids before training).
            renders = any(s.renders for s in self.sources)
            loader = DataLoader(_SourceBatches(self.sources), batch_size=None, sampler=_Keys(self, global_step),
                                num_workers=self.workers, pin_memory=self.pin_memory, prefetch_factor=2,
                                collate_fn=_as_is, multiprocessing_context="spawn" if renders else None,
                                # its own generator: starting workers must not draw from the global RNG training uses
                                generator=torch.Generator().manual_seed(self.seed * 131 + self.rank))
            self._batches = iter(loader)
        si, images, labels, skipped = next(self._batches)
        labels = {k: torch.from_numpy(v) for k, v in labels.items()}
        while self._drawn and self._drawn[0][0] <= global_step:
            _, self._used_state = self._drawn.popleft()
        source = self.sources[si]
        # each worker meets a bad file once: report it once
        source.skipped.extend(m for m in skipped if m not in source.skipped)
        return (source.name, *self.mirror(images, labels))

    def close(self) -> None:
        """Stop the worker processes (a later ``next`` starts new ones from the samplers' used state)."""
        if self._batches is not None:
            self._batches = None  # the iterator's finaliser stops its workers
            self._restore_samplers(self._used_state)
            self._drawn.clear()

    def mirror(self, images: torch.Tensor, labels: dict) -> tuple[torch.Tensor, dict]:
        """Flip each sample with probability mirror_p; attributes say how their labels change."""
        if self.mirror_p <= 0:
            return images, labels
        flip = torch.rand(images.shape[0], generator=self.gen) < self.mirror_p
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        labels = dict(labels)
        for a in self.attributes:
            if a.mirror is not None and a.has_labels(labels):
                for key, value in a.mirror(labels).items():
                    mask = flip.view(-1, *[1] * (value.dim() - 1))
                    labels[key] = torch.where(mask, value, labels[key])
        return images, labels

    def _sampler_states(self) -> dict[str, torch.Tensor]:
        return {f"sampler/{key}": s.state() for key, s in self.samplers.items()}

    def state(self) -> dict[str, torch.Tensor]:
        """The samplers' states after the last batch used (what a resumed run continues from)."""
        return dict(self._used_state) if self._batches is not None else self._sampler_states()

    def _restore_samplers(self, states: dict[str, torch.Tensor]) -> None:
        for key in [k for k in self.samplers if f"sampler/{k}" not in states]:
            del self.samplers[key]  # created by prefetching only: drawn afresh when first used
        for key, st in states.items():
            if key.startswith("sampler/"):
                self._sampler(key[len("sampler/"):], seed=0).set_state(st)

    def restore(self, states: dict[str, torch.Tensor]) -> None:
        self.close()
        self._restore_samplers(states)


class LabelCounts:
    """Labelled samples per attribute and source; ranks count their own and are summed at each log step and
    checkpoint (every rank calls ``merge`` at the same steps)."""

    def __init__(self, attributes, sources, device, world: int):
        self.attributes, self.names = attributes, [s.name for s in sources]
        self.index = {n: j for j, n in enumerate(self.names)}
        self.device, self.world = device, world
        self.total = torch.zeros(len(attributes), len(sources), dtype=torch.float64)
        self.pending = torch.zeros_like(self.total)

    def add(self, source: str, labels: dict) -> None:
        j = self.index[source]
        for i, a in enumerate(self.attributes):
            if a.has_labels(labels):
                self.pending[i, j] += float(a.labelled_rows(labels).sum())

    def merge(self) -> None:
        self.total += distributed.sum_over_ranks(self.pending, self.device, self.world)
        self.pending.zero_()

    def summary(self, labelled_by: dict) -> dict:
        """Per attribute: the sources that label it and how many labelled samples of each it has trained on."""
        return {a.name: {"labelled_by": labelled_by[a.name],
                         "samples": {n: int(c) for n, c in zip(self.names, self.total[i].tolist()) if c}}
                for i, a in enumerate(self.attributes)}
