"""SynthFaces' renderer: ``parts`` builds each face's parts from its parameters, ``draw`` draws them (a
numba-compiled loop in ``compositing``, or the torch reference)."""

from fsx.data.render.draw import render
from fsx.data.render.parts import PARTS, actions, build_parts, rotation_matrix

__all__ = ["PARTS", "actions", "build_parts", "render", "rotation_matrix"]
