"""The samples ``fsx eval`` measures on, from any source ``fsx train`` reads, split into a set that fits the
probes and a held-out set that the report's numbers come from.

SynthFaces has its own held-out persons. For any other source the split is, in this order: ``--probe-data``
(another source fits the probes); the source's ``split`` column (``train`` rows fit, ``test`` rows are measured;
``val`` rows are for choosing settings and are not used); halves of its persons, disjoint, when it labels
``person``; otherwise a seeded random half of its rows. The split used is written into the report.
"""

from __future__ import annotations

import attrs
import torch

from fsx.data.source import FileSource
from fsx.data.sources import parse_sources


class EvalSet(FileSource):
    """Images (uint8, in memory) and labels of the samples an evaluation uses; unreadable files are dropped
    (and counted) when it is built, so that images and labels stay aligned."""

    def __init__(self, name: str, images_u8: torch.Tensor, labels: dict, skipped: list[str], origin: torch.Tensor):
        self.name, self.images_u8, self.labels, self.skipped = name, images_u8, labels, skipped
        self.origin = origin  # each sample's index in its source (-1 where a batch lost a file and it is unknown)

    def __len__(self) -> int:
        return len(self.images_u8)

    def images(self, indices) -> torch.Tensor:
        return self.images_u8[torch.as_tensor(indices, dtype=torch.long)].float() / 255

    def labels_of(self, indices, fields=None) -> dict:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v[idx] for k, v in self.labels.items() if fields is None or k in fields}

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        return self.images(indices), self.labels_of(indices)

    @classmethod
    def read(cls, source, indices, batch: int = 256) -> "EvalSet":
        images, labels, origin = [], {}, []
        for s in range(0, len(indices), batch):
            chunk = list(indices[s : s + batch])
            try:
                x, y = source.get_batch(chunk)
            except ValueError:  # a batch with no readable image at all: its files are in source.skipped
                continue
            images.append((x * 255).round().to(torch.uint8))
            origin += [int(i) for i in chunk] if len(x) == len(chunk) else [-1] * len(x)
            for k, v in y.items():
                labels.setdefault(k, []).append(v)
        if not images:
            raise ValueError(f"data source {source.name!r}: none of the {len(indices)} images could be read")
        return cls(source.name, torch.cat(images), {k: torch.cat(v) for k, v in labels.items()},
                   list(source.skipped), torch.tensor(origin, dtype=torch.long))


@attrs.frozen
class EvalSplit:
    fit: EvalSet
    test: EvalSet
    how: str  # the split, in words, for the report


def _one_source(spec: str, size: int, seed: int):
    sources = parse_sources(spec, size, seed=seed)
    if len(sources) != 1:
        raise ValueError(f"--data {spec!r}: fsx eval measures on one source at a time, got {len(sources)}")
    return sources[0]


def _take(idx: torch.Tensor, n: int, g: torch.Generator) -> list[int]:
    return idx[torch.randperm(len(idx), generator=g)[:n]].sort().values.tolist()


def split_source(spec: str, size: int, probe_spec: str | None = None, fit_samples: int = 4000,
                 test_samples: int = 3200, seed: int = 0) -> EvalSplit:
    """Read the fit and test samples of a source (see the module docstring for how the split is chosen)."""
    source = _one_source(spec, size, seed)
    g = torch.Generator().manual_seed(seed)
    everything = torch.arange(len(source))
    if probe_spec:
        fit_source = _one_source(probe_spec, size, seed)
        fit = EvalSet.read(fit_source, _take(torch.arange(len(fit_source)), fit_samples, g))
        test = EvalSet.read(source, _take(everything, test_samples, g))
        return EvalSplit(fit, test, f"probes fitted on {fit_source.name}, measured on {source.name}")
    split = getattr(source, "split", None)
    if split is not None and "train" in split and "test" in split:
        tags = list(split)
        fit_idx = torch.tensor([i for i, t in enumerate(tags) if t == "train"])
        test_idx = torch.tensor([i for i, t in enumerate(tags) if t == "test"])
        how = f"{source.name}'s split column: probes fitted on its train rows, measured on its test rows"
    elif "person" in source.labels:
        person = source.labels["person"]
        ids = person[person >= 0].unique()
        ids = ids[torch.randperm(len(ids), generator=g)]
        if len(ids) < 2:
            raise ValueError(f"--data {spec!r}: one person only; give a split column or --probe-data")
        fit_ids = ids[: len(ids) // 2]
        in_fit = torch.isin(person, fit_ids)
        fit_idx, test_idx = everything[in_fit], everything[~in_fit]
        how = (f"{source.name} has no split column: its persons in two disjoint halves ({len(fit_ids)} fit the "
               f"probes, {len(ids) - len(fit_ids)} are measured)")
    else:
        perm = everything[torch.randperm(len(everything), generator=g)]
        fit_idx, test_idx = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        how = f"{source.name} has no split column and no persons: a seeded random half of its rows fits the probes"
    if not len(fit_idx) or not len(test_idx):
        raise ValueError(f"--data {spec!r}: its split leaves no samples to fit or to measure on")
    return EvalSplit(EvalSet.read(source, _take(fit_idx, fit_samples, g)),
                     EvalSet.read(source, _take(test_idx, test_samples, g)), how)


class RenderedOnce:
    """A SynthFaces split whose pictures are rendered at most once per evaluation: encoding, the RMSE, the judge,
    the figures and FID all read the same test pictures. Everything else (labels, parameters, counterfactuals)
    is the split's own."""

    def __init__(self, split):
        self.split, self._images = split, {}

    def __len__(self) -> int:
        return len(self.split)

    def __getattr__(self, name):
        return getattr(self.split, name)

    def images(self, indices) -> torch.Tensor:
        idx = [int(i) for i in torch.as_tensor(indices, dtype=torch.long).flatten()]
        missing = sorted(set(idx) - set(self._images))
        if missing:
            self._images.update(zip(missing, self.split.images(missing)))
        return torch.stack([self._images[i] for i in idx])

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        return self.images(indices), self.split.labels_of(indices)
