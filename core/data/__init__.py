"""Data: the SynthFaces renderer and data set, label-partial sources and batch sampling."""

from fsx.data.face_params import CATEGORIES, GROUPS, mix
from fsx.data.render import render
from fsx.data.sampling import BatchSampler
from fsx.data.synthfaces import LABEL_FIELDS, LabelledView, SynthFaces

__all__ = ["CATEGORIES", "GROUPS", "LABEL_FIELDS", "BatchSampler", "LabelledView", "SynthFaces", "mix", "render"]
