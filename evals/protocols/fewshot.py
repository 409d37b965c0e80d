"""Few-shot training subsets: k examples of every class, drawn per seed.

The subset for (labels, k, seed) is fixed: each class's examples are permuted by a generator
seeded with (seed, class), so the k-shot subset is a prefix of the 2k-shot one for the same
seed (curves over k move by adding examples, not by redrawing them) and adding a class to the
dataset does not change the draws of the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitbench.errors import VitbenchError

SHOTS = (1, 2, 4, 8, 16)


def few_shot_indices(labels: Any, k: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of k examples per class (classes with fewer than k: a one-line error)."""
    labels = np.asarray(labels)
    if k < 1:
        raise VitbenchError(f"few-shot k must be >= 1, got {k}")
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            raise VitbenchError(f"class {c} has {len(members)} training examples, fewer than "
                                f"k={k}")
        order = np.random.default_rng([seed, int(c)]).permutation(len(members))
        chosen.append(members[order[:k]])
    return np.sort(np.concatenate(chosen))
