"""What an attribute is: the contract every attribute plugin fills in.

An attribute owns one sub-vector f_k of the disentangled embedding f = Phi(z). It declares how large that
sub-vector is, which labels train it, how batches must be formed so its loss can find positives and
negatives, the loss itself (the feature distance F_k of Eq. 7) and how it is evaluated.
"""

from __future__ import annotations

import math

import re
from typing import Any, Callable, Mapping, Protocol

import attrs
import torch

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _valid_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"{attribute.name} {value!r} must be lower-case letters, digits and '_', starting with a letter")


class AttributeLoss(Protocol):
    """F_k: maps a batch of sub-vectors (N, dim) and the batch's labels to a scalar loss.

    Samples for which no usable positive/negative exists contribute nothing; a batch with none at all
    returns a zero that is still connected to the graph (never NaN). A loss made of several terms may instead
    return a mapping {part name: scalar}: the task loss is their sum, and training also logs each part (weighted
    like the sum) as ``task_<attribute>.<part>``, so a user sees which term moves.

    A loss that changes during training (a term only in a stage's first steps) also defines ``at(stage, step)``,
    returning the loss to use at that step of that stage (``step`` counts from 0 in each stage); training asks
    before every step. Without it the loss is the same throughout.
    """

    def __call__(
        self, features: torch.Tensor, labels: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor | Mapping[str, torch.Tensor]: ...


@attrs.frozen
class SamplerSpec:
    """How a (macro-)batch must be formed for the attribute's loss.

    ``group_by`` lists label fields from outer to inner; ``counts`` says how many distinct values of each a
    macro-batch holds. Identity: ``group_by=("person",), counts=(20,)``: 20 persons. Style:
    ``group_by=("person", "clip"), counts=(5, 4)``: 5 persons with 4 clips each. Empty: plain random batches.
    """

    group_by: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    counts: tuple[int, ...] = attrs.field(default=(), converter=tuple)

    @counts.validator
    def _check(self, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
        if len(value) != len(self.group_by):
            raise ValueError(f"SamplerSpec: group_by {self.group_by} and counts {value} differ in length")
        if any(int(c) < 1 for c in value):
            raise ValueError(f"SamplerSpec: counts must be >= 1, got {value}")

    @property
    def is_grouped(self) -> bool:
        return bool(self.group_by)


LABEL_KINDS = ("category", "scalar", "vector", "group")


@attrs.frozen
class Label:
    """A label field an attribute trains on: its name, its kind and its unit.

    - ``category``: integer classes 0, 1, ... (a missing value is -1);
    - ``scalar``: one float (missing: NaN);
    - ``vector``: floats read from several named columns of a ``labels.csv``, joined in the order of
      ``columns`` (pose joins yaw, pitch, roll; missing: NaN);
    - ``group``: an id shared by the samples of one group (a person, a clip); ids that are not integers are
      mapped to integers in sorted order, so the same file always gives the same ids (missing: -1).

    A plugin may name a label by a plain string: a ``scalar``."""

    name: str = attrs.field(validator=_valid_name)
    kind: str = attrs.field(default="scalar", validator=attrs.validators.in_(LABEL_KINDS))
    columns: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    unit: str = ""

    @columns.validator
    def _check_columns(self, attribute: attrs.Attribute, value: tuple) -> None:
        if self.kind == "vector" and not value:
            raise ValueError(f"label {self.name!r}: a vector label names its columns")
        if self.kind != "vector" and value:
            raise ValueError(f"label {self.name!r}: only a vector label has columns")

    @property
    def is_integer(self) -> bool:
        return self.kind in ("category", "group")

    def present(self, values: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which samples carry this label (the rest hold the missing value of its kind)."""
        if self.is_integer:
            return values >= 0
        return ~torch.isnan(values.reshape(len(values), -1)).any(dim=1)


def _labels(value) -> tuple[Label, ...]:
    return tuple(v if isinstance(v, Label) else Label(v) for v in value)


PROBE_KINDS = ("regression", "verification", "classification")


@attrs.frozen
class Probe:
    """How ``fsx eval`` measures the attribute from a sub-vector.

    regression: predict ``label`` (e.g. pose angles), report MAE per component.
    verification: same/different ``label`` pairs (LFW protocol); ``within`` keeps only pairs that share that
    field (style: two clips of the same person); ``across`` keeps only pairs that differ in it (identity:
    two different clips, so a shared background cannot give the answer away).
    classification: predict the class ``label`` with a small MLP, report AUC per class.
    ``unit``: what a regression's error is measured in (the label's unit: degrees for pose).
    """

    kind: str = attrs.field(validator=attrs.validators.in_(PROBE_KINDS))
    label: str = attrs.field()
    within: str | None = None
    across: str | None = None
    class_names: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    component_names: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    unit: str = ""


@attrs.frozen
class Attribute:
    """One attribute plugin's declaration. ``package``/``version`` are filled in by the registry."""

    name: str = attrs.field(validator=_valid_name)
    dim: int = attrs.field()
    labels: tuple[Label, ...] = attrs.field(converter=_labels)  # Label objects, or names (scalars)
    loss: AttributeLoss = attrs.field()
    sampler: SamplerSpec = attrs.field(factory=SamplerSpec)
    probe: Probe | None = None
    aliases: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    weight: float = attrs.field(default=1.0, converter=float)
    mirror: Callable[[dict], dict] | None = None  # how a horizontal flip changes its labels; None: unchanged
    description: str = ""
    # Options this attribute takes under a training preset, e.g. {"demo": {"weight": 20.0}}: the preset's tuning of
    # an attribute lives with the attribute (a plugin can tune itself for a preset); --option overrides them.
    presets: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, hash=False)
    package: str = ""
    version: str = ""

    @presets.validator
    def _check_presets(self, attribute: attrs.Attribute, value) -> None:
        if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
            raise ValueError(f"attribute {self.name!r}: presets must map a preset name to a dict of options, "
                             f"got {value!r}")

    @dim.validator
    def _check_dim(self, attribute: attrs.Attribute, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"attribute {self.name!r}: dim must be an integer >= 1, got {value!r}")

    @loss.validator
    def _check_loss(self, attribute: attrs.Attribute, value: Callable) -> None:
        if not callable(value):
            raise ValueError(f"attribute {self.name!r}: loss must be callable, got {value!r}")

    @sampler.validator
    def _check_sampler(self, attribute: attrs.Attribute, value: SamplerSpec) -> None:
        if not isinstance(value, SamplerSpec):
            raise ValueError(f"attribute {self.name!r}: sampler must be a SamplerSpec, got {value!r}")
        missing = [f for f in value.group_by if f not in self.label_names]
        if missing:
            raise ValueError(f"attribute {self.name!r}: sampler groups by {missing}, which are not among its labels")

    @aliases.validator
    def _check_aliases(self, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
        for alias in value:
            _valid_name(self, attribute, alias)

    def configure(self, **options: Any) -> "Attribute":
        """A copy with ``weight`` and/or loss options changed, e.g. ``identity.configure(margin=0.5)``."""
        weight = options.pop("weight", self.weight)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"attribute {self.name!r}: option 'weight' must be a finite number >= 0, got {weight!r}")
        loss = self.loss
        if options:
            if not attrs.has(type(loss)):
                raise ValueError(f"attribute {self.name!r}: its loss takes no options (got {sorted(options)})")
            known = {f.name for f in attrs.fields(type(loss))}
            unknown = sorted(set(options) - known)
            if unknown:
                raise ValueError(f"attribute {self.name!r}: unknown option(s) {unknown}; known: {sorted(known | {'weight'})}")
            for key, value in options.items():  # a value of the wrong kind fails here, not at the first step
                default = getattr(loss, key)
                if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                    raise ValueError(f"attribute {self.name!r}: option {key!r} must be a finite number, got {value!r}")
                if isinstance(default, str) and not isinstance(value, str):
                    raise ValueError(f"attribute {self.name!r}: option {key!r} must be a string, got {value!r}")
            loss = attrs.evolve(loss, **options)
        return attrs.evolve(self, loss=loss, weight=weight)

    def at(self, stage: str, step: int) -> "Attribute":
        """This attribute at ``step`` of training stage ``stage``: its loss's ``at`` where the loss defines one (a
        schedule), otherwise itself."""
        at = getattr(self.loss, "at", None)
        loss = self.loss if at is None else at(stage, step)
        if loss is self.loss:
            return self
        if not callable(loss):
            raise ValueError(f"{self.qualified_name}: its loss's at({stage!r}, {step}) returned {type(loss).__name__}, "
                             f"not a loss")
        return attrs.evolve(self, loss=loss)

    @property
    def qualified_name(self) -> str:
        """How errors name it: ``attribute 'age' (package fsx-age 0.1.0)``."""
        return f"attribute {self.name!r} (package {self.package} {self.version}".rstrip() + ")"

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    def has_labels(self, labels: Mapping[str, Any]) -> bool:
        """Whether a batch carries every label field this attribute needs."""
        return all(field in labels for field in self.label_names)

    def label_present(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which samples carry label ``name`` (a probe's label that is not one of the attribute's own
        training labels counts as present everywhere)."""
        label = next((lab for lab in self.labels if lab.name == name), None)
        return label.present(values) if label is not None else torch.ones(len(values), dtype=torch.bool)

    def labelled_rows(self, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(N,) bool: the samples of a batch that carry every label this attribute needs (a source may label a
        field only partly: empty cells of a labels.csv)."""
        rows = None
        for label in self.labels:
            present = label.present(labels[label.name])
            rows = present if rows is None else rows & present
        return rows
