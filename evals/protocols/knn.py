"""Weighted k-nearest-neighbour classification on frozen features (the DINO kNN protocol).

Features are L2-normalised, so inner product is cosine similarity. Each of the k most similar
training points votes for its class with weight exp(sim / T); the prediction is the class with
the largest summed vote (Wu et al. 2018, as used by DINO with k=20, T=0.07).

One exact inner-product search with the largest k serves every k: the top-k neighbours are a
prefix of the top-max(k) neighbours, so votes are accumulated column by column and read off at
each requested k.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from vitbench.errors import VitbenchError
from vitbench.evals.protocols._arrays import normalised_rows

# Move the search to a GPU index (when faiss has GPUs) only for databases at least this big
# (train rows x dim): below it the copy to the device costs more than the search saves.
_GPU_MIN_ELEMENTS = 50_000_000
# faiss GPU indexes reject k above this.
_GPU_MAX_K = 2048
# Budget for the per-chunk vote matrix (queries x classes, float64); sets the query chunk.
_VOTE_BYTES = 256 * 2**20
_MAX_QUERY_CHUNK = 8192


def knn_classify(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
) -> np.ndarray:
    """Predict test labels by temperature-weighted cosine kNN voting.

    Args:
        train_x: (n_train, dim) features, numpy array or torch tensor of any float dtype.
        train_y: (n_train,) integer labels in [0, num_classes).
        test_x: (n_test, dim) features.
        k: number of neighbours; capped at n_train.
        temperature: T in the vote weight exp(sim / T).
        num_classes: number of classes; defaults to max(train_y) + 1.

    Returns:
        (n_test,) int64 predicted labels. Ties in the vote go to the smallest class index.

    Raises:
        VitbenchError: on empty, mismatched or non-finite inputs, or bad k / temperature.
    """
    return next(iter(knn_predict_many(train_x, train_y, test_x, (k,), temperature,
                                      num_classes).values()))


def knn_predict_many(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    ks: Iterable[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
) -> dict[int, np.ndarray]:
    """Predict test labels for several k from one neighbour search.

    Args:
        train_x: (n_train, dim) features, numpy array or torch tensor of any float dtype.
        train_y: (n_train,) integer labels in [0, num_classes).
        test_x: (n_test, dim) features.
        ks: numbers of neighbours. Each is capped at n_train; ks that become equal collapse
            into one entry.
        temperature: T in the vote weight exp(sim / T).
        num_classes: number of classes; defaults to max(train_y) + 1.

    Returns:
        {effective k: (n_test,) int64 predictions}, keys in ascending order.

    Raises:
        VitbenchError: on empty, mismatched or non-finite inputs, or bad ks / temperature.
    """
    train = normalised_rows(train_x, "train_x")
    test = normalised_rows(test_x, "test_x")
    labels = _labels(train_y, len(train))
    if train.shape[1] != test.shape[1]:
        raise VitbenchError(f"train_x has {train.shape[1]} features but test_x has "
                            f"{test.shape[1]}; both must come from the same encoder")
    num_classes = _num_classes(labels, num_classes)
    ks = _effective_ks(ks, len(train))
    if not temperature > 0:
        raise VitbenchError(f"kNN temperature must be > 0, got {temperature}")

    predictions = {k: np.empty(len(test), dtype=np.int64) for k in ks}
    index = _build_index(train, max(ks))
    chunk = max(1, min(_MAX_QUERY_CHUNK, _VOTE_BYTES // (8 * num_classes)))
    for start in range(0, len(test), chunk):
        sims, ids = index.search(test[start:start + chunk], max(ks))
        sims, ids = _sort_neighbours(sims, ids)
        for k, pred in _vote(sims, labels[ids], ks, temperature, num_classes).items():
            predictions[k][start:start + chunk] = pred
    return predictions


def _labels(y: Any, n: int) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.shape != (n,):
        raise VitbenchError(f"train_y must have shape ({n},) to match train_x, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise VitbenchError(f"kNN labels must be integer class indices, got dtype {y.dtype}")
    if y.min() < 0:
        raise VitbenchError("kNN labels must be >= 0 class indices")
    return y.astype(np.int64)


def _num_classes(labels: np.ndarray, num_classes: int | None) -> int:
    needed = int(labels.max()) + 1
    if num_classes is None:
        return needed
    if num_classes < needed:
        raise VitbenchError(f"num_classes={num_classes} but train_y contains label {needed - 1}")
    return int(num_classes)


def _effective_ks(ks: Iterable[int], n_train: int) -> list[int]:
    ks = list(ks)
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise VitbenchError(f"kNN k values must be positive integers, got {ks}")
    return sorted({min(int(k), n_train) for k in ks})


class _Index:
    """Exact inner-product search over the training features (faiss IndexFlatIP)."""

    def __init__(self, index: Any, keep_alive: Any = None):
        self._index = index
        self._keep_alive = keep_alive  # GPU resources must outlive the GPU index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, ids = self._index.search(np.ascontiguousarray(queries), k)
        return sims, ids


def _build_index(train: np.ndarray, k: int) -> _Index:
    import faiss  # imported here: faiss is heavy and only the kNN protocol needs it

    index, resources = faiss.IndexFlatIP(train.shape[1]), None
    if train.size >= _GPU_MIN_ELEMENTS and k <= _GPU_MAX_K and _faiss_gpus(faiss) > 0:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, 0, index)
    index.add(train)
    return _Index(index, resources)


def _faiss_gpus(faiss: Any) -> int:
    """Number of GPUs faiss can use: 0 for faiss-cpu builds, which lack the GPU API."""
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return faiss.get_num_gpus()


def _sort_neighbours(sims: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by decreasing similarity, then increasing train index.

    faiss already returns rows sorted by similarity; re-sorting pins down the order of equal
    similarities so that truncating to a smaller k never depends on the search backend.
    """
    order = np.lexsort((ids, -sims), axis=1)
    return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)


def _vote(
    sims: np.ndarray, neighbour_labels: np.ndarray, ks: list[int], temperature: float,
    num_classes: int,
) -> dict[int, np.ndarray]:
    """Accumulate exp(sim / T) votes neighbour by neighbour, reading predictions at each k."""
    # Shifting by each row's best similarity rescales all of that row's weights by the same
    # factor (argmax unchanged) and keeps exp() finite for small temperatures.
    weights = np.exp((sims.astype(np.float64) - sims[:, :1]) / temperature)
    votes = np.zeros((len(sims), num_classes), dtype=np.float64)
    rows = np.arange(len(sims))
    predictions = {}
    done = 0
    for k in ks:
        for j in range(done, k):
            # One label per row, so a plain fancy-index add never collides within a row.
            votes[rows, neighbour_labels[:, j]] += weights[:, j]
        done = k
        predictions[k] = votes.argmax(axis=1)  # first maximum: smallest class index wins
    return predictions
