"""Evaluation protocols on feature arrays: kNN and linear probe."""

from vitbench.evals.protocols.knn import knn_classify, knn_predict_many
from vitbench.evals.protocols.linear import (
    LinearProbeResult,
    LogisticFit,
    fit_logistic,
    linear_probe,
)

__all__ = [
    "LinearProbeResult",
    "LogisticFit",
    "fit_logistic",
    "knn_classify",
    "knn_predict_many",
    "linear_probe",
]
