"""fsx: compact, disentangled face embeddings (pose, identity, expression, style) with an adversarial
autoencoder, and attributes as plugins.

    import fsx
    model = fsx.load("runs/demo/model.safetensors")
    feats = model.encode(images)      # images: float (N, 3, H, W) in [0, 1]
"""

__version__ = "0.2.0"

from fsx.checkpoint import CheckpointError, CheckpointWriteError, load, read_metadata, save_model  # noqa: E402
from fsx.config import AttributeSlot, ModelConfig  # noqa: E402
from fsx.model import FaceModel, build_model  # noqa: E402

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
