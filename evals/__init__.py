"""Evaluation suite: protocols that score frozen features (kNN, linear probe)."""

from vitbench.evals.protocols import (
    LinearProbeResult,
    knn_classify,
    knn_predict_many,
    linear_probe,
)

__all__ = ["LinearProbeResult", "knn_classify", "knn_predict_many", "linear_probe"]
