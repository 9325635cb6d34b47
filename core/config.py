"""The model's configuration: everything needed to rebuild the networks, stored in every checkpoint."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import validators as v

from fsx.sizes import SUPPORTED_SIZES


@attrs.frozen
class AttributeSlot:
    """One sub-vector of f: which attribute, how many dims, and the package that provides it."""

    name: str = attrs.field(validator=v.instance_of(str))
    dim: int = attrs.field(validator=[v.instance_of(int), v.ge(1)])
    package: str = ""
    version: str = ""


# A field's annotation (a string under ``from __future__ import annotations``) -> the JSON types it accepts.
_KINDS = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "str": ((str,), "a string"),
          "bool": ((bool,), "true or false")}


def _check_kind(field: attrs.Attribute, value: Any, what: str) -> None:
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    base = annotation.split("[")[0].split("|")[0].strip()
    if base in _KINDS:
        types, words = _KINDS[base]
        if isinstance(value, bool) and base != "bool" or not isinstance(value, types):
            raise ValueError(f"{what.replace('(s)', '')} {field.name!r} must be {words}, got {value!r}")
    elif base in ("tuple", "dict") and not isinstance(value, (tuple, list) if base == "tuple" else dict):
        raise ValueError(f"{what.replace('(s)', '')} {field.name!r} must be a {'list' if base == 'tuple' else 'mapping'}, got {value!r}")


def from_fields(cls, d: dict, what: str):
    """``cls(**d)`` for a frozen attrs class, naming any unknown key, or a value of the wrong type, instead of a
    TypeError."""
    fields = {f.name: f for f in attrs.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}")
    for key, value in d.items():
        _check_kind(fields[key], value, what)
    return cls(**d)


def _slots(value: Any) -> tuple[AttributeSlot, ...]:
    return tuple(s if isinstance(s, AttributeSlot) else AttributeSlot(**s) for s in value)


DISENTANGLERS = ("mlp", "flow")  # the kinds of Phi / Phi^-1 (fsx.disentangler)
NETWORK_ROLES = ("encoder", "generator", "image_discriminator", "latent_discriminator")


@attrs.frozen
class NetworkConfig:
    """Which backbones, and how big: the part of the model a training run chooses (``TrainConfig.model``).
    ``latent_dim`` 0 means: the sum of the attribute dims (99 for the paper's four), as in the paper where z and f
    have the same size."""

    image_size: int = attrs.field(default=64, validator=v.in_(SUPPORTED_SIZES))
    latent_dim: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    # channel multiplier of E, G, D_x (at most 4: the paper's networks are width 1)
    width: float = attrs.field(default=1.0, converter=float, validator=[v.gt(0), v.le(4.0)])
    latent_disc_hidden: int = attrs.field(default=1000, validator=v.ge(1))
    phi_hidden: int = attrs.field(default=1000, validator=v.ge(1))
    # Phi and Phi^-1: the paper's two MLPs ("mlp"), or one invertible network whose inverse is exact ("flow"; z and
    # f must then have one size). fsx.disentangler says what each means for an edit.
    disentangler: str = attrs.field(default="mlp", validator=v.in_(DISENTANGLERS))
    encoder: str = "resnet18_encoder"
    generator: str = "resnet18_generator"
    image_discriminator: str = "dcgan_discriminator"
    latent_discriminator: str = "mlp_latent_discriminator"
    # Extra keyword arguments per network, e.g. {"generator": {"blocks": 1}} (the authors' one residual block per
    # stage) or {"image_discriminator": {"width": 0.5}}; they override image_size/width for that network only.
    backbone_options: dict = attrs.field(factory=dict)

    @backbone_options.validator
    def _check_backbone_options(self, attribute: attrs.Attribute, value: dict) -> None:
        unknown = sorted(set(value) - set(NETWORK_ROLES))
        if unknown:
            raise ValueError(f"backbone_options: unknown network(s) {unknown}; they are {', '.join(NETWORK_ROLES)}")
        for role, options in value.items():
            if not isinstance(options, dict):
                raise ValueError(f"backbone_options[{role!r}] must be a mapping of keyword arguments, got {options!r}")

    def backbone_kwargs(self, role: str, **defaults) -> dict:
        """The keyword arguments that build network ``role``: ``defaults`` with its ``backbone_options`` on top."""
        return {**defaults, **self.backbone_options.get(role, {})}

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        return from_fields(cls, d, "model option(s)")


@attrs.frozen
class ModelConfig(NetworkConfig):
    """A model's networks and its attribute layout: everything needed to rebuild it, stored in every checkpoint
    (one flat JSON object)."""

    attributes: tuple[AttributeSlot, ...] = attrs.field(kw_only=True, converter=_slots)

    @attributes.validator
    def _check_attributes(self, attribute: attrs.Attribute, value: tuple) -> None:
        if not value:
            raise ValueError("ModelConfig needs at least one attribute")
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError(f"ModelConfig: attribute names repeat: {names}")

    @property
    def feature_dim(self) -> int:
        return sum(s.dim for s in self.attributes)

    @property
    def z_dim(self) -> int:
        return self.latent_dim or self.feature_dim

    def to_dict(self) -> dict:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return from_fields(cls, d, "model config field(s)")

    @classmethod
    def for_attributes(cls, attributes, networks: NetworkConfig | None = None, **kwargs) -> "ModelConfig":
        """Config for resolved :class:`fsx.attributes.Attribute` objects, in the given order, with the networks
        of ``networks`` (defaults otherwise) and ``kwargs`` on top."""
        slots = [AttributeSlot(a.name, a.dim, a.package, a.version) for a in attributes]
        base = attrs.asdict(networks) if networks is not None else {}
        return cls(attributes=slots, **{**base, **kwargs})
