"""Linear probe: parity with scikit-learn's LogisticRegression and a test-blind C sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from vitbench.errors import VitbenchError
from vitbench.evals import LinearProbeResult, linear_probe
from vitbench.evals.protocols.linear import _stratified_split, fit_logistic


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These problems are tiny: one thread is fastest, and it keeps the suite fast on a busy
    machine, where OpenMP barriers between two threads can cost ~50x per small op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def digits():
    x, y = load_digits(return_X_y=True)
    return x[:1300], y[:1300], x[1300:], y[1300:]


def gaussian_classes(seed=0, n=1600, dim=40, classes=20):
    """Overlapping class clusters: accuracy well below 100%, so C matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n)
    x = centres[y] + 1.2 * rng.normal(size=(n, dim))
    cut = n * 3 // 4
    return x[:cut], y[:cut], x[cut:], y[cut:]


def standardised(train_x, test_x):
    scaler = StandardScaler().fit(train_x)
    return scaler.transform(train_x), scaler.transform(test_x)


@pytest.mark.parametrize("data", [digits, gaussian_classes])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_fit_logistic_matches_sklearn(data, C):
    train_x, train_y, test_x, test_y = data()
    train_x, test_x = standardised(train_x, test_x)
    fit = fit_logistic(train_x, train_y, C, tol=1e-6)
    weight, bias = fit.weight.numpy(), fit.bias.numpy()
    ours = (test_x @ weight.T + bias).argmax(axis=1)

    sk = LogisticRegression(C=C, max_iter=5000).fit(train_x, train_y)
    assert abs((ours == test_y).mean() - sk.score(test_x, test_y)) <= 0.005
    assert (ours == sk.predict(test_x)).mean() >= 0.98

    # Coefficients against a tightly converged reference (sklearn's default tol=1e-4 stops
    # further from the optimum than we do). Softmax is shift-invariant, so compare centred
    # intercepts.
    exact = LogisticRegression(C=C, max_iter=5000, tol=1e-9).fit(train_x, train_y)
    assert np.linalg.norm(weight - exact.coef_) <= 1e-2 * np.linalg.norm(exact.coef_)
    np.testing.assert_allclose(bias, exact.intercept_ - exact.intercept_.mean(), atol=2e-2)


def test_fit_logistic_reaches_sklearn_objective():
    train_x, train_y, _, _ = gaussian_classes(1)
    C = 0.3
    fit = fit_logistic(torch.from_numpy(train_x).float(), torch.from_numpy(train_y), C)
    exact = LogisticRegression(C=C, max_iter=5000, tol=1e-9).fit(train_x, train_y)

    def objective(weight, bias):  # sklearn's objective divided by C * n, in float64
        logits = train_x @ weight.T + bias
        top = logits.max(axis=1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        ce = (log_z - logits[np.arange(len(train_y)), train_y]).mean()
        return ce + (weight**2).sum() / (2 * C * len(train_y))

    ours = objective(fit.weight.double().numpy(), fit.bias.double().numpy())
    best = objective(exact.coef_, exact.intercept_)
    assert ours - best <= 1e-5 * best
    assert fit.loss == pytest.approx(ours, rel=1e-4)


def test_warm_start_converges_to_the_same_solution_faster():
    train_x, train_y, _, _ = gaussian_classes(2)
    cold = fit_logistic(train_x, train_y, 1.0)
    warm = fit_logistic(train_x, train_y, 1.0, init=fit_logistic(train_x, train_y, 0.5))
    assert warm.n_evals < cold.n_evals
    np.testing.assert_allclose(warm.weight.numpy(), cold.weight.numpy(), atol=3e-3)


def test_sweep_never_looks_at_test_labels():
    train_x, train_y, test_x, test_y = gaussian_classes(3)
    grid = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    result = linear_probe(train_x, train_y, test_x, test_y, c_grid=grid)
    shuffled = np.random.default_rng(0).permutation(test_y)
    blind = linear_probe(train_x, train_y, test_x, shuffled, c_grid=grid)

    assert isinstance(result, LinearProbeResult)
    assert [c for c, _ in result.val_accuracy] == list(grid)
    assert blind.best_c == result.best_c
    assert blind.val_accuracy == result.val_accuracy
    np.testing.assert_array_equal(blind.predictions, result.predictions)
    assert blind.top1 < result.top1  # the test labels did matter for the score itself
    # The sweep is informative here: the strongest regularisation is clearly worse.
    accs = dict(result.val_accuracy)
    assert accs[1e-3] < max(accs.values()) - 5
    assert result.top1 == pytest.approx(100 * (result.predictions == test_y).mean())
    assert (result.n_train, result.n_test, result.num_classes) == (1200, 400, 20)


def test_top5_present_iff_more_than_five_classes():
    train_x, train_y, test_x, test_y = digits()
    ten = linear_probe(train_x, train_y, test_x, test_y, c_grid=(0.1,))
    assert ten.top5 is not None and ten.top5 >= ten.top1
    assert ten.val_accuracy == () and ten.best_c == 0.1  # one C: no validation split

    keep, keep_test = train_y < 5, test_y < 5
    five = linear_probe(train_x[keep], train_y[keep], test_x[keep_test], test_y[keep_test],
                        c_grid=(0.1,))
    assert five.num_classes == 5 and five.top5 is None


def test_default_grid_on_digits_is_accurate_and_scale_free():
    train_x, train_y, test_x, test_y = digits()
    result = linear_probe(train_x, train_y, test_x, test_y)
    assert len(result.val_accuracy) >= 9
    assert result.top1 > 90
    # Standardisation makes the probe blind to the features' overall scale.
    grid = (0.01, 0.1, 1.0)
    plain = linear_probe(train_x, train_y, test_x, test_y, c_grid=grid)
    scaled = linear_probe(1000 * train_x, train_y, 1000 * test_x, test_y, c_grid=grid)
    assert scaled.best_c == plain.best_c
    assert abs(scaled.top1 - plain.top1) <= 0.5


def test_labels_keep_their_values():
    train_x, train_y, test_x, test_y = gaussian_classes(4, classes=4)
    names = np.array(["cat", "dog", "eel", "fox"])
    result = linear_probe(train_x, names[train_y], test_x, names[test_y], c_grid=(1.0,))
    assert set(result.predictions) <= set(names)
    assert result.top1 == pytest.approx(100 * (result.predictions == names[test_y]).mean())


def test_stratified_split_is_seeded_and_keeps_every_class():
    y = np.repeat(np.arange(4), [50, 20, 5, 1])
    fit_idx, val_idx = _stratified_split(y, 0.2, seed=0)
    assert sorted(np.concatenate([fit_idx, val_idx])) == list(range(len(y)))
    assert np.bincount(y[val_idx], minlength=4).tolist() == [10, 4, 1, 0]
    assert set(y[fit_idx]) == {0, 1, 2, 3}
    again, _ = _stratified_split(y, 0.2, seed=0)
    other, _ = _stratified_split(y, 0.2, seed=1)
    np.testing.assert_array_equal(again, fit_idx)
    assert not np.array_equal(other, fit_idx)


def test_bad_inputs_raise_vitbench_error():
    train_x, train_y, test_x, test_y = gaussian_classes(5)
    with pytest.raises(VitbenchError, match="features"):
        linear_probe(train_x, train_y, test_x[:, :3], test_y)
    with pytest.raises(VitbenchError, match="val_fraction"):
        linear_probe(train_x, train_y, test_x, test_y, val_fraction=1.0)
    with pytest.raises(VitbenchError, match="c_grid"):
        linear_probe(train_x, train_y, test_x, test_y, c_grid=(0.0, 1.0))
    with pytest.raises(VitbenchError, match="single class"):
        linear_probe(train_x, np.zeros_like(train_y), test_x, test_y)
    with pytest.raises(VitbenchError, match="labels"):
        fit_logistic(train_x, train_y, 1.0, num_classes=5)
    if not torch.cuda.is_available():
        with pytest.raises(VitbenchError, match="CUDA"):
            linear_probe(train_x, train_y, test_x, test_y, device="cuda")
