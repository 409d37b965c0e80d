"""kNN protocol: agreement with a direct numpy formula and with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from vitbench.errors import VitbenchError
from vitbench.evals import knn_classify, knn_predict_many

T = 0.07


def reference_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """The DINO formula written out in float64, independent of the implementation."""
    train = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    test = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    sims = test @ train.T
    k = min(k, len(train))
    preds = []
    for row in sims:
        top = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(num_classes)
        np.add.at(votes, train_y[top], np.exp(row[top] / temperature))
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


def clustered(seed, n_train=600, n_test=300, dim=32, classes=7, spread=1.5):
    """Overlapping Gaussian clusters, so that k and the weighting actually matter."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    train_y = rng.integers(0, classes, n_train)
    test_y = rng.integers(0, classes, n_test)
    train_x = centres[train_y] + spread * rng.normal(size=(n_train, dim))
    test_x = centres[test_y] + spread * rng.normal(size=(n_test, dim))
    return train_x, train_y, test_x, test_y


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_formula_for_several_ks(seed):
    train_x, train_y, test_x, _ = clustered(seed)
    ks = (1, 5, 20, 100)
    many = knn_predict_many(train_x, train_y, test_x, ks, T)
    assert list(many) == list(ks)
    for k in ks:
        expected = reference_knn(train_x, train_y, test_x, k, T, 7)
        np.testing.assert_array_equal(many[k], expected)
        np.testing.assert_array_equal(knn_classify(train_x, train_y, test_x, k, T), expected)
    # Different ks must give different answers here, or the test would not test much.
    assert (many[1] != many[100]).any()


@pytest.mark.parametrize("k", [1, 10, 50])
def test_matches_sklearn_weighted_cosine_knn(k):
    train_x, train_y, test_x, _ = clustered(3)
    sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                              weights=lambda d: np.exp((1 - d) / T))
    expected = sk.fit(train_x, train_y).predict(test_x)
    np.testing.assert_array_equal(knn_classify(train_x, train_y, test_x, k, T), expected)


def test_k_larger_than_train_is_capped_and_collapses():
    train_x, train_y, test_x, _ = clustered(4, n_train=30)
    many = knn_predict_many(train_x, train_y, test_x, ks=(10, 20, 100, 200))
    assert list(many) == [10, 20, 30]
    expected = reference_knn(train_x, train_y, test_x, 30, T, 7)
    np.testing.assert_array_equal(many[30], expected)
    np.testing.assert_array_equal(knn_classify(train_x, train_y, test_x, k=500), expected)


def test_torch_and_numpy_inputs_agree():
    train_x, train_y, test_x, _ = clustered(5)
    from_numpy = knn_classify(train_x, train_y, test_x)
    from_torch = knn_classify(torch.from_numpy(train_x).half(), torch.from_numpy(train_y),
                              torch.from_numpy(test_x).to(torch.bfloat16))
    assert from_torch.dtype == np.int64
    # Half/bfloat16 rounding may move a near-tie; nearly all predictions must agree.
    assert (from_numpy == from_torch).mean() > 0.97
    np.testing.assert_array_equal(
        knn_classify(torch.from_numpy(train_x), torch.from_numpy(train_y),
                     torch.from_numpy(test_x)), from_numpy)


def test_separable_toy_case():
    # Class c lives on axis c; queries sit next to an axis, with a different norm (ignored).
    train_x = np.repeat(np.eye(3), 4, axis=0) + 0.01 * np.arange(12)[:, None]
    train_y = np.repeat(np.arange(3), 4)
    test_x = np.array([[5.0, 0.1, 0.0], [0.0, 0.2, 0.1], [0.1, 0.0, 9.0], [0.0, 0.3, 0.2]])
    preds = knn_predict_many(train_x, train_y, test_x, ks=(1, 4))
    for k in (1, 4):
        np.testing.assert_array_equal(preds[k], [0, 1, 2, 1])


def test_vote_ties_go_to_smallest_class_and_num_classes_is_respected():
    # Two identical training points with different labels: equal votes, class 2 < class 5.
    train_x = np.array([[1.0, 0.0], [1.0, 0.0]])
    preds = knn_classify(train_x, np.array([5, 2]), np.array([[1.0, 0.1]]), k=2,
                         num_classes=8)
    np.testing.assert_array_equal(preds, [2])


def test_small_temperature_does_not_overflow():
    train_x, train_y, test_x, _ = clustered(6)
    preds = knn_classify(train_x, train_y, test_x, k=20, temperature=1e-4)
    np.testing.assert_array_equal(preds, knn_classify(train_x, train_y, test_x, k=1))


def test_bad_inputs_raise_vitbench_error():
    train_x, train_y, test_x, _ = clustered(7)
    with pytest.raises(VitbenchError, match="features"):
        knn_classify(train_x, train_y, test_x[:, :5])
    with pytest.raises(VitbenchError, match="integer"):
        knn_classify(train_x, train_y.astype(float), test_x)
    with pytest.raises(VitbenchError, match="num_classes"):
        knn_classify(train_x, train_y, test_x, num_classes=3)
    with pytest.raises(VitbenchError, match="k values"):
        knn_predict_many(train_x, train_y, test_x, ks=(0, 5))
    with pytest.raises(VitbenchError, match="NaN"):
        knn_classify(np.full_like(train_x, np.nan), train_y, test_x)
