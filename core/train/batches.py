"""What each training step sees: sources taking turns, each attribute's macro-batch kind (Sec. 3.9), mirroring,
and how many labelled samples each attribute has trained on."""

from __future__ import annotations

import torch

from fsx.attributes.base import SamplerSpec
from fsx.data.sampling import BatchSampler
from fsx.train import distributed


class BatchSchedule:
    """Sources take turns by global step; inside a source, the grouped samplers of the attributes it labels take
    turns (random batches if it labels none). Every sampler's position is part of the checkpoint."""

    def __init__(self, sources, attributes, batch: int, seed: int, rank: int, mirror_p: float, generator):
        self.sources, self.attributes, self.batch = sources, attributes, batch
        self.seed, self.rank, self.mirror_p, self.gen = seed, rank, mirror_p, generator
        self.index = {s.name: j for j, s in enumerate(sources)}
        self.specs = {s.name: self._specs_for(s) for s in sources}  # fixed for the run: worked out once
        self.samplers: dict[str, BatchSampler] = {}

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

    def next(self, global_step: int) -> tuple[str, torch.Tensor, dict]:
        si = global_step % len(self.sources)
        source = self.sources[si]
        ki = (global_step // len(self.sources)) % len(self.specs[source.name])
        sampler = self._sampler(f"{source.name}:{ki}", seed=self.seed * 31 + si * 7 + ki)
        images, labels = source.get_batch(next(sampler))
        return (source.name, *self.mirror(images, labels))

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

    def state(self) -> dict[str, torch.Tensor]:
        return {f"sampler/{key}": s.state() for key, s in self.samplers.items()}

    def restore(self, states: dict[str, torch.Tensor]) -> None:
        for key, st in states.items():
            if key.startswith("sampler/"):
                self._sampler(key[len("sampler/"):], seed=0).set_state(st)


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
