"""Batch formation: plain random batches, or the macro-batches an attribute's ``SamplerSpec`` asks for
(identity: 20 persons; style: 5 persons x 4 clips), sharded across ranks."""

from __future__ import annotations

from typing import Iterator, Mapping

import torch

from fsx.attributes.base import SamplerSpec


class BatchSampler:
    """Yields lists of sample indices forever. Deterministic given (seed, rank); every rank draws its own
    batches of ``batch_size`` (the per-rank size), so DDP ranks see different data."""

    def __init__(
        self,
        labels: Mapping[str, torch.Tensor],
        spec: SamplerSpec,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        min_per_group: int = 2,
    ):
        self.spec, self.batch_size = spec, int(batch_size)
        n = len(next(iter(labels.values())))
        self.n = n
        self.generator = torch.Generator().manual_seed(seed * 1000003 + rank * 7919 + 17)
        self.counts = list(spec.counts)
        if spec.is_grouped:
            missing = [f for f in spec.group_by if f not in labels]
            if missing:
                raise ValueError(f"sampler groups by {missing}, which this data source does not label")
            # Fit the macro-batch into the batch: keep at least ``min_per_group`` samples per innermost group
            # by taking fewer outer groups when the batch is small.
            inner = 1
            for c in self.counts[1:]:
                inner *= c
            self.counts[0] = max(2, min(self.counts[0], self.batch_size // (min_per_group * inner)))
            self.tree = self._index_tree(labels, spec.group_by)

    @staticmethod
    def _index_tree(labels, keys):
        """Nested {value: {value: ... tensor of indices}} over the grouping keys (rows without a group id left
        out)."""
        idx = torch.arange(len(labels[keys[0]]))

        def build(sel, depth):
            if depth == len(keys):
                return sel
            values = labels[keys[depth]][sel]
            return {int(v): build(sel[values == v], depth + 1) for v in values.unique() if v >= 0}  # -1: unlabelled

        return build(idx, 0)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def _choose(self, n: int, k: int) -> torch.Tensor:
        """k of range(n), without replacement when possible."""
        if k <= n:
            return torch.randperm(n, generator=self.generator)[:k]
        return torch.randint(n, (k,), generator=self.generator)

    def __iter__(self) -> Iterator[list[int]]:
        return self

    def __next__(self) -> list[int]:
        if not self.spec.is_grouped:
            return self._choose(self.n, self.batch_size).tolist()
        leaves = []

        def descend(node, depth):
            if depth == len(self.counts):
                leaves.append(node)
                return
            keys = list(node)
            for i in self._choose(len(keys), min(self.counts[depth], len(keys))).tolist():
                descend(node[keys[i]], depth + 1)

        descend(self.tree, 0)
        out = []
        per_leaf, extra = divmod(self.batch_size, len(leaves))
        for j, leaf in enumerate(leaves):
            k = per_leaf + (1 if j < extra else 0)
            out.extend(leaf[self._choose(len(leaf), k)].tolist())
        return out
