"""SynthFaces: persons x clips x frames of rendered faces with exact labels and render parameters.

A clip fixes a person's identity and a style (background, light, colour temperature, glasses, hat, noise,
blur); its frames move the head smoothly between two poses and play expression segments of four frames,
each segment one category whose valence and arousal glide inside that category's region. Train, validation and
test persons are disjoint (different person ids and parameter streams): settings are chosen on ``val`` and
reported on ``test``.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Sequence

import attrs
import torch

from fsx.data.face_params import (
    CATEGORIES,
    CATEGORY_VA,
    GROUPS,
    IDENTITY_FIELDS,
    STYLE_FIELDS,
    mix,
    sample_identity,
    sample_pose,
    sample_style,
)
from fsx.data.render import render

SPLITS = {"train": 0, "test": 1, "val": 2}
PERSON_OFFSET = {"train": 0, "test": 1_000_000, "val": 2_000_000}  # person ids never collide across splits
# Every rendered factor is a label as well, so a plugin attribute can train on it: the identity parameters (one
# value per person: face shape, skin and hair colour, ...) and the style parameters (one per clip: background,
# light, colour temperature, glasses, hat, noise, blur); glasses and hat are 0/1 classes, the rest floats in the
# renderer's units (face_params.py).
FACTOR_LABELS = IDENTITY_FIELDS + tuple(f for f in STYLE_FIELDS if f != "noise_seed")
CLASS_FACTORS = ("glasses", "hat")
LABEL_FIELDS = ("pose", "person", "clip", "valence", "arousal", "category") + FACTOR_LABELS
SEGMENT = 4  # frames per expression segment
# The default size of each split (the one place it is set: training, evaluation and the CLI read it from here).
PERSONS = {"train": 400, "test": 100, "val": 100}
CLIPS_PER_PERSON, FRAMES_PER_CLIP = 4, 16


def _check_memory(n: int, image_size: int, cache: bool) -> None:
    """Refuse a set whose parameters and picture cache would not fit in the memory that is free, naming its size,
    before anything is allocated (the labels alone take ~0.5 KB a picture, the cache 3 x size^2 bytes)."""
    need = n * (512 + (3 * image_size * image_size if cache else 0))
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not on this system: nothing to compare with
        return
    if need > 0.8 * free:
        raise ValueError(f"SynthFaces of {n:,} pictures at {image_size} px would need {need / 2**30:.1f} GiB "
                         f"({'with' if cache else 'without'} its picture cache) of the {free / 2**30:.1f} GiB free: "
                         f"use fewer persons (synth.persons), or synth.persons=0 (streamed, nothing kept)")


def clip_motion(n_clips: int, frames: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose and expression of every frame of every clip, (clips, frames, 3) each: the pose a smooth
    (cosine-eased) move between two random poses; the expression segments of SEGMENT frames, each one category
    gliding between two points of its region of the valence-arousal plane."""
    F = frames
    p0, p1 = sample_pose(n_clips, g), sample_pose(n_clips, g)
    t = torch.linspace(0, 1, F) if F > 1 else torch.zeros(1)
    ease = 0.5 - 0.5 * torch.cos(math.pi * t)
    pose = p0[:, None] + (p1 - p0)[:, None] * ease[None, :, None]  # (clips, F, 3)
    n_seg = -(-F // SEGMENT)
    cat = torch.randint(len(CATEGORIES), (n_clips, n_seg), generator=g)
    box = CATEGORY_VA[cat]  # (clips, seg, 4)
    start, end = torch.rand(n_clips, n_seg, 2, generator=g), torch.rand(n_clips, n_seg, 2, generator=g)
    seg = torch.arange(F) // SEGMENT
    within = (torch.arange(F) % SEGMENT).float() / max(SEGMENT - 1, 1)
    frac = start[:, seg] + (end[:, seg] - start[:, seg]) * within[None, :, None]  # (clips, F, 2)
    b = box[:, seg]
    v = b[..., 0] + (b[..., 1] - b[..., 0]) * frac[..., 0]
    a = b[..., 2] + (b[..., 3] - b[..., 2]) * frac[..., 1]
    expression = torch.stack([v, a, cat[:, seg].float()], -1)  # (clips, F, 3)
    return pose, expression


@attrs.frozen
class SynthFacesSpec:
    """The size of a SynthFaces split; the default train split has 400 persons x 4 clips x 16 frames."""

    persons: int = attrs.field(default=PERSONS["train"], validator=attrs.validators.ge(1))
    clips_per_person: int = attrs.field(default=CLIPS_PER_PERSON, validator=attrs.validators.ge(1))
    frames_per_clip: int = attrs.field(default=FRAMES_PER_CLIP, validator=attrs.validators.ge(1))
    seed: int = 0


class SynthFaces:
    """One split of the data set. ``get_batch(indices)`` renders (or reads from the cache) images in [0, 1]
    and returns them with their labels; ``params`` holds every sample's render parameters by factor."""

    name = "synthfaces"

    def __init__(
        self,
        split: str = "train",
        image_size: int = 64,
        persons: int | None = None,
        clips_per_person: int = CLIPS_PER_PERSON,
        frames_per_clip: int = FRAMES_PER_CLIP,
        seed: int = 0,
        cache: bool = True,
    ):
        if split not in SPLITS:
            raise ValueError(f"SynthFaces split must be one of {list(SPLITS)}, got {split!r}")
        persons = persons if persons is not None else PERSONS[split]
        _check_memory(persons * clips_per_person * frames_per_clip, image_size, cache)
        self.spec = SynthFacesSpec(persons, clips_per_person, frames_per_clip, seed)
        self.split, self.image_size = split, image_size
        g = torch.Generator().manual_seed(seed * 7919 + SPLITS[split] * 104729 + 1)
        P, C, F = persons, clips_per_person, frames_per_clip
        n_clips = P * C

        identity = sample_identity(P, g)
        style = sample_style(n_clips, g)
        pose, expression = clip_motion(n_clips, F, g)

        person_of_clip = torch.arange(P).repeat_interleave(C)
        offset = PERSON_OFFSET[split]
        self.params = {
            "pose": pose.reshape(-1, 3),
            "identity": identity[person_of_clip].repeat_interleave(F, 0),
            "expression": expression.reshape(-1, 3),
            "style": style.repeat_interleave(F, 0),
        }
        # Noise differs frame to frame inside a clip (the sensor), the rest of style does not.
        self.params["style"][:, GROUPS["style"].index("noise_seed")] += torch.arange(n_clips * F).float() % F * 13.0
        clip_ids = torch.arange(n_clips).repeat_interleave(F)
        self.labels = {
            "pose": self.params["pose"].clone(),
            "person": person_of_clip.repeat_interleave(F) + offset,
            "clip": clip_ids + offset * C,
            "valence": self.params["expression"][:, 0].clone(),
            "arousal": self.params["expression"][:, 1].clone(),
            "category": self.params["expression"][:, 2].long(),
            "frame": torch.arange(F).repeat(n_clips),
        }
        for group, fields in (("identity", IDENTITY_FIELDS), ("style", STYLE_FIELDS)):
            for j, field in enumerate(fields):
                if field in FACTOR_LABELS:
                    column = self.params[group][:, j].clone()
                    self.labels[field] = column.round().long() if field in CLASS_FACTORS else column
        self._cache = torch.zeros(len(self), 3, image_size, image_size, dtype=torch.uint8) if cache else None
        self._cached = torch.zeros(len(self), dtype=torch.bool) if cache else None

    def __len__(self) -> int:
        return self.labels["person"].shape[0]

    def __repr__(self) -> str:
        s = self.spec
        return (f"SynthFaces({self.split}, {s.persons} persons x {s.clips_per_person} clips x {s.frames_per_clip} "
                f"frames = {len(self)} images, {self.image_size} px)")

    def params_of(self, indices) -> dict:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v[idx] for k, v in self.params.items()}

    def labels_of(self, indices, fields: Iterable[str] | None = None) -> dict:
        """The labels of ``indices``: ``fields`` (default: every label, vectors that plugins join included)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: self.labels[k][idx] for k in (self.labels if fields is None else fields)}

    def images(self, indices) -> torch.Tensor:
        """Images (B, 3, S, S) in [0, 1]; rendered once and kept as uint8 when caching."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self._cache is None:
            return render(self.params_of(idx), self.image_size)
        missing = idx[~self._cached[idx]].unique()
        if len(missing):
            imgs = render(self.params_of(missing), self.image_size)
            self._cache[missing] = (imgs * 255).round().to(torch.uint8)
            self._cached[missing] = True
        return self._cache[idx].float() / 255

    renders = False  # a fixed set: rendered once into its cache (warm_cache), in index order
    exact = True  # its labels are the factors its pictures were rendered from

    @property
    def skipped(self) -> list:  # rendered pictures are never unreadable
        return []

    def at_step(self, step: int, indices: Sequence[int]) -> list[int]:
        return list(indices)

    def warm_cache(self, chunk: int = 256) -> None:
        """Render every sample into the cache, in index order and fixed chunks (so the cached pixels do not
        depend on which batches asked for them first)."""
        if self._cache is None:
            return
        for start in range(0, len(self), chunk):
            idx = torch.arange(start, min(start + chunk, len(self)))
            todo = idx[~self._cached[idx]]
            if len(todo) == len(idx):
                self._cache[idx] = (render(self.params_of(idx), self.image_size) * 255).round().to(torch.uint8)
                self._cached[idx] = True
            elif len(todo):
                self.images(todo)

    def get_batch(self, indices, fields: Iterable[str] | None = None) -> tuple[torch.Tensor, dict]:
        return self.images(indices), self.labels_of(indices, fields)

    def counterfactual(self, a, b, attributes: str | Sequence[str], everything_except: bool = False) -> torch.Tensor:
        """The exact image of ``transfer(A, B, attributes)``: factors ``attributes`` from sample(s) ``a``, the
        rest from ``b``; with ``everything_except`` all factors *but* those come from ``a``."""
        names = {attributes} if isinstance(attributes, str) else set(attributes)
        take = (set(GROUPS) - names) if everything_except else names
        pa, pb = self.params_of(a), self.params_of(b)
        if len(pa["pose"]) == 1 and len(pb["pose"]) > 1:
            pa = {k: v.expand(len(pb["pose"]), -1) for k, v in pa.items()}
        return render(mix(pa, pb, take), self.image_size)

    def source(self, labels: Sequence[str] | None = None, name: str | None = None) -> "LabelledView":
        """This data set as a source that labels only ``labels`` (Sec. 3.9's label-partial data sets)."""
        return LabelledView(self, tuple(labels) if labels is not None else LABEL_FIELDS, name or self.name)


class LabelledView:
    """A data source that exposes a subset of its parent's label fields."""

    def __init__(self, parent: SynthFaces, fields: tuple[str, ...], name: str):
        unknown = [f for f in fields if f not in parent.labels]
        if unknown:
            raise ValueError(f"source {name!r}: unknown label field(s) {unknown}; SynthFaces has "
                             f"{', '.join(LABEL_FIELDS)}")
        self.parent, self.fields, self.name = parent, fields, name
        self.labels = {f: parent.labels[f] for f in fields}

    def __len__(self) -> int:
        return len(self.parent)

    def get_batch(self, indices) -> tuple[torch.Tensor, dict]:
        return self.parent.get_batch(indices, self.fields)

    exact = True  # the labels are the factors the pictures were rendered from

    @property
    def renders(self) -> bool:
        return self.parent.renders

    @property
    def skipped(self) -> list:  # rendered pictures are never unreadable
        return []

    def at_step(self, step: int, indices: Sequence[int]) -> list[int]:
        """The indices a step reads: the sampler's, or a stream's generation of them (``SynthStream``)."""
        return self.parent.at_step(step, indices)

    def warm_cache(self) -> None:
        self.parent.warm_cache()

    def __repr__(self) -> str:
        return f"{self.name}: {self.parent!r} labelled with {list(self.fields)}"


class SynthStream:
    """Unlimited SynthFaces persons: every training step draws its batch from persons rendered for that step only.

    The sampler sees a template of ``persons`` x ``clips_per_person`` x ``frames_per_clip`` samples (so identity's
    and style's macro-batches still get persons with several clips and frames); ``at_step(step, indices)`` turns
    the template indices a sampler drew for a step into indices of that step's own generation of persons, whose
    factors come from a seeded stream of (seed, step): nothing is cached, no person comes back, and a resumed run
    renders the same pictures for the same step. A fixed set lets G learn its persons instead of how to draw a
    face (docs/experiments.md); persons cost nothing here, the renderer draws thousands of faces a second.
    Streamed persons are drawn like the train split's and never from the validation or test persons' streams."""

    name = "synthfaces"
    renders = True  # draws its pictures when asked for them (a DataLoader worker's work; see BatchSchedule)
    exact = True
    skipped = SynthFaces.skipped

    def __init__(self, image_size: int = 64, persons: int = 64, clips_per_person: int = CLIPS_PER_PERSON,
                 frames_per_clip: int = FRAMES_PER_CLIP, seed: int = 0, add_labels=None):
        self.image_size, self.seed = image_size, seed
        self.shape = (persons, clips_per_person, frames_per_clip)
        self.add_labels = add_labels  # labels derived from the rendered ones (a plugin's vector label), per generation
        self.template = self.generation(0)
        self.labels = self.template.labels

    def generation(self, g: int) -> SynthFaces:
        """The persons of generation ``g`` (one training step's): a train-split SynthFaces of the template's size
        whose parameter stream is (seed, g), person and clip ids numbered apart from every other generation's."""
        P, C, F = self.shape
        # train-split streams have seeds s * 7919 + 1; these use s = 1 + seed * 2**20 + g (no clash with the
        # fixed train split's s = seed while g < 2**20 - 1 per seed)
        data = SynthFaces("train", self.image_size, persons=P, clips_per_person=C, frames_per_clip=F,
                          seed=1 + self.seed * 2**20 + g, cache=False)
        data.labels["person"] = data.labels["person"] + g * P
        data.labels["clip"] = data.labels["clip"] + g * P * C
        if self.add_labels is not None:
            self.add_labels(data.labels)
        return data

    def __len__(self) -> int:
        return len(self.template)

    def __repr__(self) -> str:
        P, C, F = self.shape
        return (f"SynthFaces(stream: new persons every step, {P} persons x {C} clips x {F} frames per step, "
                f"{self.image_size} px)")

    def warm_cache(self) -> None:  # nothing to warm: every step renders its own persons
        pass

    def at_step(self, step: int, indices: Sequence[int]) -> list[int]:
        """Template indices -> the same positions in generation ``step``."""
        return [int(step) * len(self) + int(i) for i in indices]

    def get_batch(self, indices, fields: Iterable[str] | None = None) -> tuple[torch.Tensor, dict]:
        """Pictures and labels of stream indices (``at_step``'s; plain template indices are generation 0)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        gens = (idx // len(self)).unique()
        if len(gens) != 1:
            raise ValueError("SynthStream.get_batch: one batch must come from one generation (one step)")
        data = self.generation(int(gens[0])) if int(gens[0]) else self.template
        local = idx % len(self)
        return render(data.params_of(local), self.image_size), data.labels_of(local, fields)

    def source(self, labels: Sequence[str] | None = None, name: str | None = None) -> "LabelledView":
        return LabelledView(self, tuple(labels) if labels is not None else LABEL_FIELDS, name or self.name)
