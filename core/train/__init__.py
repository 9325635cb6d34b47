"""Training: configuration and presets, the stage steps, and the loop behind ``fsx train``."""

from fsx.train.config import PRESETS, TrainConfig, make_config
from fsx.train.run_folder import RunFolderError, load_run_config
from fsx.train.stages import STAGES
from fsx.train.trainer import NonFiniteLossError, Trainer, TrainingInterrupted, train

__all__ = ["PRESETS", "STAGES", "NonFiniteLossError", "RunFolderError", "TrainConfig", "Trainer", "TrainingInterrupted",
           "load_run_config", "make_config", "train"]
