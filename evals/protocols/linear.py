"""Linear probe on frozen features: multinomial logistic regression with a validated C.

The classifier is the one scikit-learn's `LogisticRegression(C=C)` fits with lbfgs: it
minimises C * sum_i CE_i + 0.5 * ||W||^2 with an unpenalised intercept. Here it is fit in
torch with full-batch L-BFGS (strong-Wolfe line search), in float32 on any device, so the
same code runs on a laptop CPU and on a GPU for ImageNet-sized feature sets.

`linear_probe` picks C by a sweep on a stratified validation split carved from the training
set (the test set is only touched once, by the final model), refits on the whole training set
with that C, and reports test top-1 / top-5.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vitbench.errors import VitbenchError

DEFAULT_C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 4, 17))
PATIENCE = 4  # grid values (two decades) past the best before the sweep stops
SWEEP_MAX_ITER = 300  # L-BFGS iterations per sweep fit
# Rows per chunk when computing the loss: bounds the (rows x classes) logits kept for backward.
_LOGIT_ELEMENTS = 2**25


@dataclass(frozen=True)
class LogisticFit:
    """A fitted multinomial logistic regression: logits = x @ weight.T + bias."""

    weight: torch.Tensor  # (num_classes, dim)
    bias: torch.Tensor  # (num_classes,), sums to zero (softmax is shift-invariant)
    C: float
    loss: float  # final value of mean CE + ||W||^2 / (2 C n)
    n_iter: int  # L-BFGS iterations
    n_evals: int  # loss/gradient evaluations (iterations plus line-search steps)


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields make generated == ambiguous
class LinearProbeResult:
    """Outcome of `linear_probe`. Accuracies are percentages in [0, 100]."""

    top1: float
    top5: float | None  # None when there are <= 5 classes (top-5 would be trivial)
    best_c: float
    val_accuracy: tuple[tuple[float, float], ...]  # (C, validation top-1) per C swept
    predictions: np.ndarray  # (n_test,) predicted labels, in the caller's label values
    n_train: int
    n_test: int
    num_classes: int
    seconds: float


def linear_probe(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    *,
    c_grid: Sequence[float] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> LinearProbeResult:
    """Fit a logistic-regression probe with C chosen on validation; report test accuracy.

    Features are standardised with the training set's per-dimension mean and std before
    fitting. Encoders differ in feature scale by orders of magnitude (raw pixels vs unit-norm
    embeddings), and the L2 penalty is not scale-invariant: standardising makes one C grid
    mean the same thing for every encoder, and conditions the problem so that L-BFGS
    converges in few iterations. The statistics use no labels and come from the training set
    only (validation split included, as the final model is fit on all of it), never the test
    set.

    Args:
        train_x: (n_train, dim) features, numpy array or torch tensor.
        train_y: (n_train,) labels (any sortable values: ints, strings).
        test_x: (n_test, dim) features.
        test_y: (n_test,) labels; values unseen in training count as errors.
        c_grid: inverse regularisation strengths to sweep; defaults to `DEFAULT_C_GRID`
            (17 values, 1e-4 .. 1e4). A single value skips the validation split.
        val_fraction: share of each class held out for validation during the sweep.
        seed: seed of the validation split.
        device: torch device for all tensors ("cpu", "cuda", ...).
        max_iter: L-BFGS iteration cap per fit.
        tol: L-BFGS stops when the largest gradient entry falls below this.

    Returns:
        A `LinearProbeResult`; ties in validation accuracy go to the smaller C.

    Raises:
        VitbenchError: on mismatched or non-finite inputs, a bad C grid or split fraction,
            too few samples to split, or an unavailable device.
    """
    started = time.perf_counter()
    device = _device(device)
    grid = sorted({float(c) for c in (DEFAULT_C_GRID if c_grid is None else c_grid)})
    if not grid or any(not c > 0 for c in grid):
        raise VitbenchError(f"c_grid must be non-empty positive values, got {c_grid}")
    if not 0 < val_fraction < 1:
        raise VitbenchError(f"val_fraction must be in (0, 1), got {val_fraction}")

    x_train = _features(train_x, "train_x", device)
    x_test = _features(test_x, "test_x", device)
    if x_train.shape[1] != x_test.shape[1]:
        raise VitbenchError(f"train_x has {x_train.shape[1]} features but test_x has "
                            f"{x_test.shape[1]}; both must come from the same encoder")
    classes, y_train = _encode_labels(train_y, len(x_train), "train_y")
    _, y_test = _encode_labels(test_y, len(x_test), "test_y", classes)
    x_train, x_test = _standardise(x_train, x_test)
    if x_train.shape[1] > x_train.shape[0]:
        x_train, x_test = _row_space(x_train, x_test)
    y_train_t = torch.from_numpy(y_train).to(device)

    fit_kwargs = {"num_classes": len(classes), "max_iter": max_iter, "tol": tol}
    if len(grid) > 1:
        fit_idx, val_idx = (torch.from_numpy(i).to(device)
                            for i in _stratified_split(y_train, val_fraction, seed))
        # Sweep fits only rank the C values (and warm-start one another), so they get a
        # smaller iteration budget; the final refit below gets the full one.
        sweep_kwargs = {**fit_kwargs, "max_iter": min(max_iter, SWEEP_MAX_ITER)}
        init, val_accuracy = _sweep(x_train[fit_idx], y_train_t[fit_idx], x_train[val_idx],
                                    y_train_t[val_idx], grid, **sweep_kwargs)
        best_c = init.C
    else:
        init, val_accuracy, best_c = None, (), grid[0]

    final = fit_logistic(x_train, y_train_t, best_c, init=init, **fit_kwargs)
    logits = _logits(final, x_test)
    y_test_t = torch.from_numpy(y_test).to(device)
    pred = logits.argmax(dim=1).cpu().numpy()
    return LinearProbeResult(
        top1=_top1(logits, y_test_t),
        top5=_top5(logits, y_test_t) if len(classes) > 5 else None,
        best_c=best_c,
        val_accuracy=val_accuracy,
        predictions=classes[pred],
        n_train=len(x_train),
        n_test=len(x_test),
        num_classes=len(classes),
        seconds=time.perf_counter() - started,
    )


def fit_logistic(
    x: Any,
    y: Any,
    C: float,
    *,
    num_classes: int | None = None,
    init: LogisticFit | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    device: str | torch.device | None = None,
) -> LogisticFit:
    """Fit multinomial logistic regression at a fixed C with full-batch L-BFGS.

    Minimises mean_i CE_i + ||W||^2 / (2 C n), i.e. scikit-learn's objective
    C * sum_i CE_i + 0.5 * ||W||^2 divided by C * n (same minimiser, gradients of order one,
    so `tol` means the same as scikit-learn's). The intercept is not penalised. With two
    classes this softmax model matches scikit-learn's binary (sigmoid) model at 2 * C.

    Args:
        x: (n, dim) features, numpy array or torch tensor; used as given (not standardised).
        y: (n,) integer class indices in [0, num_classes).
        C: inverse regularisation strength, > 0.
        num_classes: number of classes; defaults to max(y) + 1.
        init: a previous fit to start from (warm start); zeros otherwise.
        max_iter: L-BFGS iteration cap.
        tol: stop when the largest gradient entry is below this.
        device: torch device; defaults to x's device (CPU for numpy input).

    Returns:
        A `LogisticFit` with float32 weight and bias on the device.

    Raises:
        VitbenchError: on bad shapes, labels, C, or a warm start of the wrong shape.
    """
    if device is None:
        device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    device = _device(device)
    x = _features(x, "x", device)
    y = _class_indices(y, len(x), device)
    if not C > 0:
        raise VitbenchError(f"C must be > 0, got {C}")
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise VitbenchError(f"labels must lie in [0, {num_classes}), got "
                            f"[{int(y.min())}, {int(y.max())}]")
    weight, bias = _start(init, (num_classes, x.shape[1]), device)

    n = len(x)
    chunk = max(1, _LOGIT_ELEMENTS // num_classes)
    evals = 0

    def closure() -> torch.Tensor:
        # Gradients are accumulated chunk by chunk so that memory stays bounded for large n.
        nonlocal evals
        evals += 1
        optimizer.zero_grad()
        total = torch.zeros((), device=device)
        for start in range(0, n, chunk):
            logits = x[start:start + chunk] @ weight.T + bias
            part = F.cross_entropy(logits, y[start:start + chunk], reduction="sum") / n
            part.backward()
            total += part.detach()
        penalty = (weight * weight).sum() / (2 * C * n)
        penalty.backward()
        return total + penalty.detach()

    # history_size 20: scipy's default is 10; a little more history saves iterations on
    # ill-conditioned problems at a memory cost of 40 copies of W.
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4,
        tolerance_grad=tol, tolerance_change=1e-10, history_size=20,
        line_search_fn="strong_wolfe")
    optimizer.step(closure)
    n_iter = optimizer.state[weight].get("n_iter", 0)
    weight, bias = weight.detach(), bias.detach()
    with torch.no_grad():
        ce = sum(F.cross_entropy(x[s:s + chunk] @ weight.T + bias, y[s:s + chunk],
                                 reduction="sum") for s in range(0, n, chunk))
        loss = float(ce / n + (weight * weight).sum() / (2 * C * n))
    return LogisticFit(weight=weight, bias=bias, C=float(C), loss=loss, n_iter=n_iter,
                       n_evals=evals)


def _class_indices(y: Any, n: int, device: torch.device) -> torch.Tensor:
    y = y if isinstance(y, torch.Tensor) else np.asarray(y)
    integer = (np.issubdtype(y.dtype, np.integer) if isinstance(y, np.ndarray)
               else not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool))
    if tuple(y.shape) != (n,) or not integer:
        raise VitbenchError(f"y must be ({n},) integer class indices, got "
                            f"{tuple(y.shape)} {y.dtype}")
    return torch.as_tensor(y, device=device).long()


def _start(
    init: LogisticFit | None, shape: tuple[int, int], device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trainable (weight, bias): a copy of the warm start, or zeros."""
    if init is None:
        weight, bias = torch.zeros(shape, device=device), torch.zeros(shape[0], device=device)
    elif tuple(init.weight.shape) != shape:
        raise VitbenchError(f"warm start has shape {tuple(init.weight.shape)}, need {shape}")
    else:
        weight, bias = init.weight.clone().to(device), init.bias.clone().to(device)
    return weight.requires_grad_(True), bias.requires_grad_(True)


def _sweep(
    fit_x: torch.Tensor, fit_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
    grid: list[float], **fit_kwargs: Any,
) -> tuple[LogisticFit, tuple[tuple[float, float], ...]]:
    """Fit each C in ascending order, warm-starting from the previous, more regularised fit.

    Returns:
        The fit with the best validation top-1 (the smallest C among ties), and the
        (C, validation top-1) pairs actually fitted (the sweep stops PATIENCE values after
        the best).
    """
    best, best_acc, val_accuracy, fit, since_best = None, -1.0, [], None, 0
    for c in grid:
        fit = fit_logistic(fit_x, fit_y, c, init=fit, **fit_kwargs)
        acc = _top1(_logits(fit, val_x), val_y)
        val_accuracy.append((c, acc))
        if acc > best_acc:
            best, best_acc, since_best = fit, acc, 0
        else:
            since_best += 1
        # Validation accuracy against C rises, peaks, then falls or plateaus (overfitting);
        # weakly regularised fits are also the slowest ones (near-separable data), so stop
        # once PATIENCE further values have not beaten the best.
        if since_best >= PATIENCE:
            break
    return best, tuple(val_accuracy)


def _device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VitbenchError(f"device {device} requested but CUDA is not available; "
                            "use device='cpu'")
    return device


def _features(x: Any, name: str, device: torch.device) -> torch.Tensor:
    x = torch.as_tensor(x).detach().to(device=device, dtype=torch.float32).contiguous()
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise VitbenchError(f"{name} must be a non-empty (n, dim) array, got shape "
                            f"{tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise VitbenchError(f"{name} contains NaN or inf; check the encoder's outputs")
    return x


def _encode_labels(
    y: Any, n: int, name: str, classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to indices into the sorted training classes (-1 for unseen values)."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.shape != (n,):
        raise VitbenchError(f"{name} must have shape ({n},) to match its features, "
                            f"got {y.shape}")
    if classes is None:
        classes, idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise VitbenchError(f"{name} has a single class; a probe needs at least two")
        return classes, idx.astype(np.int64)
    pos = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    return classes, np.where(classes[pos] == y, pos, -1).astype(np.int64)


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    # Constant (or numerically constant) dimensions carry no signal: leave them unscaled
    # rather than blow their rounding noise up to unit variance.
    std = torch.where(std > 1e-6 * std.max(), std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def _row_space(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-express features in an orthonormal basis of the training rows' span.

    With an L2 penalty and fits started from zero, W stays in the span of the training rows
    (every gradient X^T G + W / (C n) lies there), so fitting in coordinates of that span is
    exact: same objective values, same test logits. With dim > n (raw pixels, wide features on
    small sets) each L-BFGS step then reads n columns instead of dim.
    """
    # Through the n x n Gram matrix (float64, as eigenvalues are squared singular values):
    # several times faster on CPU than an SVD of the n x dim matrix.
    train64 = train.double()
    eigvals, eigvecs = torch.linalg.eigh(train64 @ train64.T)
    keep = eigvals > eigvals.max() * 1e-10  # drop numerically null directions
    u, s = eigvecs[:, keep], eigvals[keep].sqrt()
    # coordinates in the basis V = X^T U / s: train -> U s, test -> (x_test X^T) U / s
    return (u * s).float(), ((test.double() @ train64.T) @ u / s).float()


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out round(fraction * count) of every class, keeping at least one to fit on."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    order = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, shuffled within
    counts = np.bincount(y)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_val = np.minimum(np.round(fraction * counts).astype(np.int64), counts - 1)
    y_sorted = y[order]
    is_val = np.arange(len(y)) - starts[y_sorted] < n_val[y_sorted]
    if not is_val.any():
        raise VitbenchError(f"too few training samples ({len(y)}) to hold out a validation "
                            "split; pass a single C in c_grid")
    return np.sort(order[~is_val]), np.sort(order[is_val])


def _logits(fit: LogisticFit, x: torch.Tensor) -> torch.Tensor:
    return x @ fit.weight.T + fit.bias


def _top1(logits: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * int((logits.argmax(dim=1) == y).sum()) / len(y)


def _top5(logits: torch.Tensor, y: torch.Tensor) -> float:
    top = logits.topk(5, dim=1).indices
    return 100.0 * int((top == y[:, None]).any(dim=1).sum()) / len(y)
