"""Evaluation: metrics, probes, figures and the ``fsx eval`` report."""

from fsx.eval.evaluate import evaluate
from fsx.eval.metrics import dci, frechet_distance, mig, roc_auc, verification_accuracy

__all__ = ["dci", "evaluate", "frechet_distance", "mig", "roc_auc", "verification_accuracy"]
