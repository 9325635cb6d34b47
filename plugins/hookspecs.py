"""The hooks through which a package extends fsx.

A plugin is any module or object with functions marked ``@fsx.plugins.hookimpl`` whose names match the
specifications below. Third-party packages are found through the entry-point group ``fsx``::

    [project.entry-points.fsx]
    age = "fsx_age.plugin"

fsx's own attributes and networks (``fsx.plugins.builtin``) are registered through exactly these hooks.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("fsx")
hookimpl = pluggy.HookimplMarker("fsx")


@hookspec
def fsx_register_attributes() -> list:
    """Return the :class:`fsx.attributes.Attribute` objects this plugin provides.

    Each attribute declares its name and aliases, its sub-vector dimension, the label fields it needs, how
    a batch must be sampled for its loss, the loss itself and its evaluation probe. Names and aliases must
    be unique across all installed plugins; a clash is reported and the later attribute is not loaded.
    """


@hookspec
def fsx_register_backbones() -> dict:
    """Return ``{name: factory}`` of extra networks for :func:`fsx.backbones.create_backbone`.

    A factory takes keyword arguments (``image_size``, ``width``, ``out_dim`` ...) and returns an
    ``nn.Module``.
    """
