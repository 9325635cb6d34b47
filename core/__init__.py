"""fsx: compact, disentangled face embeddings (pose, identity, expression, style) with an adversarial
autoencoder, and attributes as plugins.

    import fsx
    model = fsx.load("runs/demo/model.safetensors")
    feats = model.encode(images)      # images: float (N, 3, H, W) in [0, 1]
"""

from fsx.checkpoint import CheckpointError, CheckpointWriteError, read_metadata
from fsx.config import AttributeSlot, ModelConfig
from fsx.model import FaceModel, build_model
from fsx.model_io import load, save_model
from fsx.version import __version__

__all__ = [
    "__version__",
    "AttributeSlot",
    "CheckpointError",
    "CheckpointWriteError",
    "FaceModel",
    "ModelConfig",
    "build_model",
    "load",
    "read_metadata",
    "save_model",
]
