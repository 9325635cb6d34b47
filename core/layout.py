"""The sub-vector layout of f: which slice of the feature vector belongs to which attribute."""

from __future__ import annotations

from typing import Iterable, Mapping

import torch


class Layout:
    """Built from (name, dim) pairs in order; ``split`` and ``join`` convert between f and {name: f_k}."""

    def __init__(self, slots: Iterable[tuple[str, int]]):
        self.slices: dict[str, slice] = {}
        start = 0
        for name, dim in slots:
            self.slices[name] = slice(start, start + dim)
            start += dim
        self.dim = start

    @property
    def names(self) -> list[str]:
        return list(self.slices)

    @property
    def dims(self) -> dict[str, int]:
        return {n: s.stop - s.start for n, s in self.slices.items()}

    def split(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, dim) -> {name: (N, dim_k)}."""
        if f.shape[-1] != self.dim:
            raise ValueError(f"feature vector has {f.shape[-1]} dims, the layout {self.dims} has {self.dim}")
        return {n: f[..., s] for n, s in self.slices.items()}

    def join(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """{name: (N, dim_k)} -> (N, dim); every attribute of the layout must be present."""
        missing = [n for n in self.slices if n not in parts]
        if missing:
            raise ValueError(f"missing sub-vector(s) {missing}; the layout is {self.dims}")
        return torch.cat([parts[n] for n in self.slices], dim=-1)

    def mask(self, names: Iterable[str], device=None) -> torch.Tensor:
        """Boolean (dim,) mask that is True on the given attributes' slices."""
        m = torch.zeros(self.dim, dtype=torch.bool, device=device)
        for n in names:
            if n not in self.slices:
                raise KeyError(f"attribute {n!r} is not in this model; it has {self.names}")
            m[self.slices[n]] = True
        return m

    def __repr__(self) -> str:
        return f"Layout({self.dims})"
