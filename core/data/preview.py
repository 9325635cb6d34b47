"""Grids of SynthFaces for a look at the data: random faces, or rows where one factor varies."""

from __future__ import annotations

import torch

from fsx.data.face_params import (
    CATEGORIES,
    CATEGORY_VA,
    GROUPS,
    POSE_FIELDS,
    POSE_RANGE,
    sample_expression,
    sample_identity,
    sample_pose,
    sample_style,
)
from fsx.data.render import render

SAMPLERS = {"pose": sample_pose, "identity": sample_identity, "expression": sample_expression, "style": sample_style}


def synth_grid(n: int = 64, size: int = 64, seed: int = 0, vary: str | None = None, columns: int = 8) -> torch.Tensor:
    """(rows * columns, 3, size, size) images. With ``vary`` each row is one face in which only that factor
    changes across the columns: pose sweeps yaw, pitch or roll over its range, expression steps through the
    eight categories, identity and style take new random draws."""
    if vary is not None and vary not in GROUPS:
        raise ValueError(f"vary must be one of {list(GROUPS)}, got {vary!r}")
    g = torch.Generator().manual_seed(seed)
    rows = max(1, -(-n // columns))
    total = rows * columns
    if vary is None:
        params = {k: SAMPLERS[k](total, g) for k in GROUPS}
        return render(params, size)[:n]
    base = {k: SAMPLERS[k](rows, g).repeat_interleave(columns, 0) for k in GROUPS}
    base["pose"] = sample_pose(rows, g, spread=0.3).repeat_interleave(columns, 0)
    t = torch.linspace(-1, 1, columns)
    if vary == "pose":
        pose = torch.zeros(rows, columns, 3)
        for r in range(rows):
            axis = r % 3
            pose[r, :, axis] = t * POSE_RANGE[POSE_FIELDS[axis]]
        base["pose"] = pose.reshape(-1, 3)
    elif vary == "expression":
        cats = torch.arange(columns) % len(CATEGORIES)
        box = CATEGORY_VA[cats]
        centre = torch.stack([(box[:, 0] + box[:, 1]) / 2, (box[:, 2] + box[:, 3]) / 2, cats.float()], 1)
        # The far corner of each category's region: the strongest version of its action.
        far = torch.stack([box[:, 0:2].abs().max(1).values * box[:, 0:2].sum(1).sign(), box[:, 3], cats.float()], 1)
        far[0] = centre[0]
        base["expression"] = far.repeat(rows, 1) if rows > 1 else far
        if rows > 1:  # later rows: random points inside each category
            for r in range(1, rows):
                base["expression"][r * columns : (r + 1) * columns] = sample_expression(columns, g, cats)
    else:
        base[vary] = SAMPLERS[vary](total, g)
    return render(base, size)[:n]
