"""What every data source is: the protocol the batch sampler, the trainer and the evaluation read, and the
defaults of a source that only reads files."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class DataSource(Protocol):
    name: str
    labels: dict  # label name -> a tensor over every sample (what samplers group by and attributes read)
    skipped: list  # unreadable pictures met so far, each "file: reason", in the order met
    renders: bool  # its pictures are rendered (SynthFaces): DataLoader workers are started by spawn
    exact: bool  # its labels are the exact factors of its pictures (SynthFaces): the judge can read them

    def __len__(self) -> int: ...

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        """Pictures (B, 3, S, S) in [0, 1] and their labels; an unreadable picture is left out and added to
        ``skipped``."""

    def at_step(self, step: int, indices: Sequence[int]) -> list[int]:
        """The indices a training step reads for the ones its sampler drew (a stream renders each step's own)."""

    def warm_cache(self) -> None:
        """Make what later batches read (rendered pictures) ready, in a fixed order."""


class FileSource:
    """The protocol's defaults for a source of picture files: nothing rendered, nothing exact, a step reads what
    its sampler drew."""

    renders = False
    exact = False

    def at_step(self, step: int, indices: Sequence[int]) -> list[int]:
        return list(indices)

    def warm_cache(self) -> None:
        pass
