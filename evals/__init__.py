"""Evaluation suite: protocols that score frozen features (kNN, linear probe, zero-shot,
retrieval, few-shot) with bootstrap uncertainty."""

from vitbench.evals.protocols import (
    Interval,
    LinearProbeResult,
    PairedComparison,
    RetrievalRecall,
    bootstrap_interval,
    few_shot_indices,
    knn_classify,
    knn_predict_many,
    linear_probe,
    paired_bootstrap,
    retrieval_recall,
    topk_hits,
    zero_shot_classify,
    zero_shot_scores,
)
from vitbench.evals.templates import template_set, template_sets

__all__ = [
    "Interval",
    "LinearProbeResult",
    "PairedComparison",
    "RetrievalRecall",
    "bootstrap_interval",
    "few_shot_indices",
    "knn_classify",
    "knn_predict_many",
    "linear_probe",
    "paired_bootstrap",
    "retrieval_recall",
    "template_set",
    "template_sets",
    "topk_hits",
    "zero_shot_classify",
    "zero_shot_scores",
]
