"""Accuracy-like metrics and their uncertainty: top-k accuracy, mean per-class recall,
percentile-bootstrap 95% intervals, and a paired bootstrap test between two encoders scored
on the same examples.

Every metric here is a mean of per-example values (1/0 hits, or 1/n_c-weighted hits for mean
per-class recall), so one resampling of the examples serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vitbench.errors import VitbenchError


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (same units)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedComparison:
    """B minus A on the same examples, its interval, and a two-sided bootstrap p-value."""

    delta: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (at the level the comparison was run with)."""
        return self.low > 0 or self.high < 0


def topk_hits(scores: Any, labels: Any, k: int = 1) -> np.ndarray:
    """(n,) 1.0 where the true class is among the k highest scores (ties: smaller index
    first, as a stable sort), else 0.0."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (len(scores),):
        raise VitbenchError(f"scores must be (n, classes) and labels (n,), got {scores.shape} "
                            f"and {labels.shape}")
    true = scores[np.arange(len(labels)), labels][:, None]
    position = np.arange(scores.shape[1])[None, :]
    rank = (scores > true).sum(1) + ((scores == true) & (position < labels[:, None])).sum(1)
    return (rank < k).astype(np.float64)


def per_class_weights(labels: Any) -> np.ndarray:
    """(n,) weights whose weighted mean of hits is the mean per-class recall: 1/n_c for an
    example of class c, scaled by n / (number of classes present)."""
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return len(labels) / (len(classes) * counts[inverse])


def bootstrap_interval(values: Any, *, samples: int = 1000, level: float = 0.95,
                       seed: int = 0) -> Interval:
    """Mean of per-example `values` and its percentile-bootstrap interval."""
    values = _per_example(values, "values")
    means = values[_resample(len(values), samples, seed)].mean(1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(values.mean()), float(low), float(high))


def paired_bootstrap(a: Any, b: Any, *, samples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> PairedComparison:
    """Compare per-example values of A and B on the same examples (B - A).

    Both are resampled with the same example indices, so the test accounts for the examples
    being shared. The p-value is twice the smaller share of bootstrap deltas on either side of
    0 (at least 1 / samples).
    """
    a, b = _per_example(a, "a"), _per_example(b, "b")
    if a.shape != b.shape:
        raise VitbenchError(f"paired comparison needs the same examples: {len(a)} vs {len(b)}")
    index = _resample(len(a), samples, seed)
    deltas = b[index].mean(1) - a[index].mean(1)
    low, high = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
    tail = min((deltas <= 0).mean(), (deltas >= 0).mean())
    return PairedComparison(float(b.mean() - a.mean()), float(low), float(high),
                            float(min(1.0, max(2 * tail, 1 / samples))))


def _per_example(values: Any, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise VitbenchError(f"{name} must be a non-empty 1-d array of finite per-example values")
    return values


def _resample(n: int, samples: int, seed: int) -> np.ndarray:
    if samples < 1:
        raise VitbenchError(f"bootstrap samples must be >= 1, got {samples}")
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))
