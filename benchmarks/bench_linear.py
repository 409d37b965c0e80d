"""Benchmark the linear probe: torch L-BFGS vs scikit-learn's LogisticRegression (lbfgs).

Two problems: scikit-learn's digits (raw pixels, 1797 x 64, 10 classes) and synthetic
clustered features (10k x 384 train, 2k test, 100 classes). For each:

* fixed C: `fit_logistic` vs `LogisticRegression(C, max_iter=5000)` on the same standardised
  features (ours at its default tol=1e-6 and at scikit-learn's 1e-4); test top-1, seconds,
  L-BFGS iterations, and the objective each reaches
  ((C * sum CE + 0.5 ||W||^2) / (C n), in float64; lower is better converged);
* full sweep: `linear_probe` (default C grid, warm-started, validation split, refit) vs the
  same protocol written with scikit-learn (StandardScaler, stratified split, warm-started
  sweep over the same grid, refit).

Run: /work/venv/bin/python benchmarks/bench_linear.py [--threads N] [--device cuda]
     [--n-train 10000 --dim 384 --classes 100]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _common import best_time, limit_threads, machine_line
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from vitbench.evals import linear_probe
from vitbench.evals.protocols.linear import DEFAULT_C_GRID, fit_logistic


def digits_problem():
    x, y = load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(x, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    return "digits raw pixels", train_x, train_y, test_x, test_y


def synthetic_problem(n_train=10_000, n_test=2_000, dim=384, classes=100, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))

    def draw(n):
        y = rng.integers(0, classes, n)
        return (centres[y] + 4.0 * rng.normal(size=(n, dim))).astype(np.float32), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return f"synthetic {n_train}x{dim}, {classes} classes", train_x, train_y, test_x, test_y


def objective(x, y, weight, bias, C):
    """scikit-learn's objective divided by C * n, in float64."""
    logits = x.astype(np.float64) @ np.asarray(weight, np.float64).T + bias
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    ce = (log_z - logits[np.arange(len(y)), y]).mean()
    return ce + (np.asarray(weight, np.float64) ** 2).sum() / (2 * C * len(y))



def fixed_c(train_x, train_y, test_x, test_y, C, repeats, device):
    scaler = StandardScaler().fit(train_x)
    train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)

    rows = []
    for tol in (1e-6, 1e-4):  # our default, then scikit-learn's default tolerance
        seconds, fit = best_time(lambda t=tol: fit_logistic(train_x, train_y, C, tol=t,
                                                                device=device),
                                 repeats)
        weight, bias = fit.weight.cpu().numpy(), fit.bias.cpu().numpy()
        acc = 100 * ((test_x @ weight.T + bias).argmax(1) == test_y).mean()
        rows.append((f"vitbench fit_logistic tol={tol:g}", acc, seconds, fit.n_iter,
                     objective(train_x, train_y, weight, bias, C)))

    seconds, sk = best_time(
        lambda: LogisticRegression(C=C, max_iter=5000).fit(train_x, train_y), repeats)
    rows.append(("scikit-learn LogisticRegression", 100 * sk.score(test_x, test_y), seconds,
                 int(sk.n_iter_[0]), objective(train_x, train_y, sk.coef_, sk.intercept_, C)))
    return rows


def sklearn_sweep(train_x, train_y, test_x, test_y, grid, val_fraction=0.2, seed=0):
    """The linear_probe protocol written with scikit-learn: returns (top-1 %, best C)."""
    scaler = StandardScaler().fit(train_x)
    train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
    fit_x, val_x, fit_y, val_y = train_test_split(train_x, train_y, test_size=val_fraction,
                                                  stratify=train_y, random_state=seed)
    model = LogisticRegression(max_iter=5000, warm_start=True)
    accs = [model.set_params(C=c).fit(fit_x, fit_y).score(val_x, val_y) for c in grid]
    best_c = grid[int(np.argmax(accs))]
    final = LogisticRegression(C=best_c, max_iter=5000).fit(train_x, train_y)
    return 100 * final.score(test_x, test_y), best_c


def run_problem(name, train_x, train_y, test_x, test_y, *, C, repeats, device):
    """Print the fixed-C and full-protocol tables for one problem."""
    grid = list(DEFAULT_C_GRID)
    print(f"\n### {name}: train {train_x.shape}, test {test_x.shape}")
    print(f"\nfixed C={C}, standardised features\n")
    rows = fixed_c(train_x, train_y, test_x, test_y, C, repeats, device)
    print(f"| {'solver':<32} | {'top-1 %':>7} | {'seconds':>7} | {'iters':>5} | "
          f"{'objective':>11} |")
    print(f"|{'-' * 34}|{'-' * 8}:|{'-' * 8}:|{'-' * 6}:|{'-' * 12}:|")
    for solver, acc, seconds, iters, obj in rows:
        print(f"| {solver:<32} | {acc:7.2f} | {seconds:7.3f} | {iters:5d} | {obj:11.6f} |")
    print(f"\nspeed ratio (scikit-learn / vitbench): {rows[2][2] / rows[0][2]:.2f}x at "
          f"tol=1e-6, {rows[2][2] / rows[1][2]:.2f}x at tol=1e-4")

    ours_s, ours = best_time(lambda: linear_probe(train_x, train_y, test_x, test_y,
                                                         device=device),
                             repeats)
    sk_s, (sk_acc, sk_c) = best_time(
        lambda: sklearn_sweep(train_x, train_y, test_x, test_y, grid), repeats)
    print(f"\nfull protocol: {len(grid)}-value C sweep on a 20% validation split + refit\n")
    print(f"| {'protocol':<32} | {'top-1 %':>7} | {'best C':>8} | {'seconds':>7} |")
    print(f"|{'-' * 34}|{'-' * 8}:|{'-' * 9}:|{'-' * 8}:|")
    print(f"| {'vitbench linear_probe':<32} | {ours.top1:7.2f} | {ours.best_c:8.3g} | "
          f"{ours_s:7.2f} |")
    print(f"| {'scikit-learn, same protocol':<32} | {sk_acc:7.2f} | {sk_c:8.3g} | "
          f"{sk_s:7.2f} |")
    print(f"\nspeed ratio (scikit-learn / vitbench): {sk_s / ours_s:.2f}x")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--C", type=float, default=1.0, help="C of the fixed-C comparison")
    parser.add_argument("--repeats", type=int, default=3, help="timings are best of N")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="vitbench's side: cpu | cuda")
    parser.add_argument("--n-train", type=int, default=10_000, help="synthetic problem")
    parser.add_argument("--dim", type=int, default=384, help="synthetic problem")
    parser.add_argument("--classes", type=int, default=100, help="synthetic problem")
    args = parser.parse_args()
    limit_threads(args.threads)
    print(machine_line(args.threads) + f"; vitbench on {args.device}")
    # Pay torch's one-off optimizer import cost (~2 s) outside the timings.
    fit_logistic(np.eye(2), np.arange(2), 1.0, device=args.device)

    synthetic = synthetic_problem(args.n_train, args.n_train // 5, args.dim, args.classes)
    for problem in (digits_problem(), synthetic):
        run_problem(*problem, C=args.C, repeats=args.repeats, device=args.device)


if __name__ == "__main__":
    main()
