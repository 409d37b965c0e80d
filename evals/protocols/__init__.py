"""Evaluation protocols on feature arrays: kNN, linear probe, zero-shot, retrieval,
few-shot subsets, and bootstrap uncertainty."""

from vitbench.evals.protocols.fewshot import SHOTS, few_shot_indices
from vitbench.evals.protocols.knn import knn_classify, knn_predict_many
from vitbench.evals.protocols.linear import (
    LinearProbeResult,
    LogisticFit,
    fit_logistic,
    linear_probe,
)
from vitbench.evals.protocols.retrieval import RetrievalRecall, retrieval_recall
from vitbench.evals.protocols.stats import (
    Interval,
    PairedComparison,
    bootstrap_interval,
    paired_bootstrap,
    per_class_weights,
    topk_hits,
)
from vitbench.evals.protocols.zeroshot import (
    class_classifier,
    zero_shot_classify,
    zero_shot_scores,
)

__all__ = [
    "SHOTS",
    "Interval",
    "LinearProbeResult",
    "LogisticFit",
    "PairedComparison",
    "RetrievalRecall",
    "bootstrap_interval",
    "class_classifier",
    "few_shot_indices",
    "fit_logistic",
    "knn_classify",
    "knn_predict_many",
    "linear_probe",
    "paired_bootstrap",
    "per_class_weights",
    "retrieval_recall",
    "topk_hits",
    "zero_shot_classify",
    "zero_shot_scores",
]
