"""SynthFaces' factors: the parameter vectors of pose, identity, expression and style, and how to sample them.

Parameters are grouped by attribute so that a counterfactual ("A's expression on B") is a dict merge.
Every group is a float tensor (N, len(FIELDS)) whose columns are named by the tuples below.
"""

from __future__ import annotations

import math

import torch

from fsx.attributes.expression import AFFECTNET_CATEGORIES

POSE_FIELDS = ("yaw", "pitch", "roll")  # degrees
POSE_RANGE = {"yaw": 45.0, "pitch": 30.0, "roll": 25.0}

IDENTITY_FIELDS = (
    "face_w", "face_h", "jaw", "eye_sep", "eye_size", "eye_y", "nose_len", "nose_w", "mouth_w", "lip",
    "brow", "skin_r", "skin_g", "skin_b", "hair_volume", "hair_len", "fringe", "hair_r", "hair_g", "hair_b",
    "iris_r", "iris_g", "iris_b",
)
EXPRESSION_FIELDS = ("valence", "arousal", "category")
STYLE_FIELDS = (
    "bg_r", "bg_g", "bg_b", "bg_amp", "bg_freq", "bg_angle", "bg_phase", "light_x", "light_y", "light_strength",
    "temperature", "glasses", "glasses_r", "glasses_g", "glasses_b", "hat", "hat_r", "hat_g", "hat_b", "noise",
    "blur", "noise_seed",
)
GROUPS = {"pose": POSE_FIELDS, "identity": IDENTITY_FIELDS, "expression": EXPRESSION_FIELDS, "style": STYLE_FIELDS}

CATEGORIES = AFFECTNET_CATEGORIES  # the expression attribute owns the categories; SynthFaces draws them
# Each AffectNet category is a box of the valence-arousal plane: (v_min, v_max, a_min, a_max).
CATEGORY_VA = torch.tensor([
    [-0.20, 0.20, -0.20, 0.20],  # neutral
    [0.40, 1.00, 0.00, 0.70],    # happy
    [-0.90, -0.40, -0.70, -0.10],  # sad
    [-0.10, 0.50, 0.50, 1.00],   # surprise
    [-0.90, -0.50, 0.55, 1.00],  # fear
    [-0.90, -0.40, 0.00, 0.45],  # disgust
    [-0.70, -0.30, 0.45, 0.90],  # anger
    [-0.55, -0.10, -0.10, 0.40],  # contempt
])

SKIN_TONES = torch.tensor([[0.96, 0.80, 0.69], [0.90, 0.70, 0.55], [0.78, 0.57, 0.42], [0.55, 0.38, 0.26], [0.36, 0.24, 0.16]])
HAIR_COLOURS = torch.tensor([[0.08, 0.06, 0.05], [0.30, 0.18, 0.09], [0.55, 0.35, 0.15], [0.85, 0.70, 0.40],
                             [0.60, 0.20, 0.08], [0.70, 0.70, 0.72]])
IRIS_COLOURS = torch.tensor([[0.35, 0.20, 0.08], [0.20, 0.45, 0.75], [0.25, 0.50, 0.25], [0.45, 0.35, 0.20]])


def _u(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _palette(n: int, palette: torch.Tensor, jitter: float, g: torch.Generator) -> torch.Tensor:
    """Colours near a palette: a random convex mix of two palette entries plus a little jitter."""
    i = torch.randint(len(palette), (n,), generator=g)
    j = torch.randint(len(palette), (n,), generator=g)
    t = torch.rand(n, 1, generator=g) * 0.5
    c = palette[i] * (1 - t) + palette[j] * t
    return (c + jitter * (torch.rand(n, 3, generator=g) - 0.5)).clamp(0, 1)


def sample_identity(n: int, g: torch.Generator) -> torch.Tensor:
    cols = [
        _u(n, 0.38, 0.47, g),   # face_w: half-width of the head (image half-width = 1)
        _u(n, 0.50, 0.60, g),   # face_h
        _u(n, 0.0, 1.0, g),     # jaw: 0 round .. 1 narrow chin
        _u(n, 0.36, 0.50, g),   # eye_sep: eye x as a fraction of face_w
        _u(n, 0.075, 0.11, g),  # eye_size
        _u(n, -0.22, -0.08, g),  # eye_y as a fraction of face_h
        _u(n, 0.12, 0.22, g),   # nose_len
        _u(n, 0.045, 0.075, g),  # nose_w
        _u(n, 0.11, 0.19, g),   # mouth_w
        _u(n, 0.020, 0.045, g),  # lip thickness
        _u(n, 0.012, 0.035, g),  # brow thickness
    ]
    skin = _palette(n, SKIN_TONES, 0.06, g)
    hair_shape = [_u(n, 0.0, 1.0, g), _u(n, 0.0, 1.0, g), _u(n, 0.0, 1.0, g)]  # volume, length, fringe
    hair = _palette(n, HAIR_COLOURS, 0.08, g)
    iris = _palette(n, IRIS_COLOURS, 0.10, g)
    return torch.cat([torch.stack(cols, 1), skin, torch.stack(hair_shape, 1), hair, iris], 1)


def sample_style(n: int, g: torch.Generator) -> torch.Tensor:
    bg = torch.rand(n, 3, generator=g) * 0.8 + 0.1
    tex = torch.stack([_u(n, 0.0, 0.25, g), _u(n, 2.0, 12.0, g), _u(n, 0, math.pi, g), _u(n, 0, 2 * math.pi, g)], 1)
    ang = _u(n, 0, 2 * math.pi, g)
    r = torch.rand(n, generator=g).sqrt() * 0.8
    light = torch.stack([r * ang.cos(), r * ang.sin(), _u(n, 0.3, 0.8, g), _u(n, -0.15, 0.15, g)], 1)
    glasses = (torch.rand(n, 1, generator=g) < 0.3).float()
    glasses_c = torch.rand(n, 3, generator=g) * 0.5
    hat = (torch.rand(n, 1, generator=g) < 0.25).float()
    hat_c = torch.rand(n, 3, generator=g)
    noise_blur = torch.stack([_u(n, 0.0, 0.04, g), _u(n, 0.0, 0.8, g)], 1)
    seed = torch.rand(n, 1, generator=g) * 1000
    return torch.cat([bg, tex, light, glasses, glasses_c, hat, hat_c, noise_blur, seed], 1)


def sample_expression(n: int, g: torch.Generator, category: torch.Tensor | None = None) -> torch.Tensor:
    cat = torch.randint(len(CATEGORIES), (n,), generator=g) if category is None else category.long()
    box = CATEGORY_VA[cat]
    v = box[:, 0] + (box[:, 1] - box[:, 0]) * torch.rand(n, generator=g)
    a = box[:, 2] + (box[:, 3] - box[:, 2]) * torch.rand(n, generator=g)
    return torch.stack([v, a, cat.float()], 1)


def sample_pose(n: int, g: torch.Generator, spread: float = 1.0) -> torch.Tensor:
    lim = torch.tensor([POSE_RANGE[f] for f in POSE_FIELDS]) * spread
    return (torch.rand(n, 3, generator=g) * 2 - 1) * lim


def column(params: torch.Tensor, group: str, field: str) -> torch.Tensor:
    return params[:, GROUPS[group].index(field)]


def mix(a: dict, b: dict, from_a) -> dict:
    """Counterfactual parameters: the groups named in ``from_a`` from ``a``, the rest from ``b``."""
    from_a = {from_a} if isinstance(from_a, str) else set(from_a)
    unknown = from_a - set(GROUPS)
    if unknown:
        raise KeyError(f"unknown SynthFaces factor(s) {sorted(unknown)}; factors: {list(GROUPS)}")
    return {k: (a[k] if k in from_a else b[k]) for k in GROUPS}
