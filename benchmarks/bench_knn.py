"""Benchmark the kNN protocol: faiss path vs scikit-learn brute force vs a torch bound.

Synthetic clustered features (50k x 768 train, 100 classes, 2k queries), k=20, T=0.07.
scikit-learn's `KNeighborsClassifier(metric="cosine", algorithm="brute")` with weights
exp((1 - d) / T) computes the same classifier, so its predictions should agree; a plain torch
matmul + topk of the same sizes (no voting) is the floor any exact search can reach.

Run: /work/venv/bin/python benchmarks/bench_knn.py [--threads N]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from _common import best_time, limit_threads, machine_line
from sklearn.neighbors import KNeighborsClassifier

from vitbench.evals import knn_classify, knn_predict_many

T = 0.07


def clustered_features(n_train: int, n_test: int, dim: int, classes: int, seed: int = 0):
    """Gaussian class clusters plus a shared low-rank nuisance, so kNN is far from perfect."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    nuisance = rng.normal(size=(16, dim)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, classes, n)
        x = centres[y] + 0.5 * rng.normal(size=(n, 16)).astype(np.float32) @ nuisance
        x += 3.0 * rng.normal(size=(n, dim)).astype(np.float32)
        return np.ascontiguousarray(x, dtype=np.float32), y

    return (*draw(n_train), *draw(n_test))



def torch_bound(train_x: np.ndarray, test_x: np.ndarray, k: int) -> torch.Tensor:
    train = torch.nn.functional.normalize(torch.from_numpy(train_x), dim=1)
    test = torch.nn.functional.normalize(torch.from_numpy(test_x), dim=1)
    return (test @ train.T).topk(k, dim=1).indices



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    limit_threads(args.threads)

    train_x, train_y, test_x, test_y = clustered_features(
        args.n_train, args.n_test, args.dim, args.classes)
    print(machine_line(args.threads))
    print(f"train {train_x.shape}, test {test_x.shape}, {args.classes} classes, k={args.k}, "
          f"T={T}")

    ours_s, ours = best_time(lambda: knn_classify(train_x, train_y, test_x, args.k, T),
                             args.repeats)
    many_s, _ = best_time(lambda: knn_predict_many(train_x, train_y, test_x), args.repeats)
    bound_s, _ = best_time(lambda: torch_bound(train_x, test_x, args.k), args.repeats)
    sk = KNeighborsClassifier(n_neighbors=args.k, metric="cosine", algorithm="brute",
                              weights=lambda d: np.exp((1 - d) / T))
    sk_s, theirs = best_time(lambda: sk.fit(train_x, train_y).predict(test_x), 1)

    rows = [
        ("vitbench knn_classify (faiss)", ours_s, ours),
        ("vitbench knn_predict_many k=10,20,100,200", many_s, None),
        ("torch matmul + topk (bound, no voting)", bound_s, None),
        ("scikit-learn brute cosine", sk_s, theirs),
    ]
    print(f"\n| {'method':<42} | {'seconds':>8} | {'queries/s':>9} | {'top-1 %':>7} |")
    print(f"|{'-' * 44}|{'-' * 9}:|{'-' * 10}:|{'-' * 8}:|")
    for name, seconds, preds in rows:
        acc = f"{100 * (preds == test_y).mean():.2f}" if preds is not None else "-"
        print(f"| {name:<42} | {seconds:8.3f} | {args.n_test / seconds:9.0f} | {acc:>7} |")
    print(f"\npredictions identical to scikit-learn: {100 * (ours == theirs).mean():.2f}%")
    print(f"speed-up vs scikit-learn: {sk_s / ours_s:.1f}x; "
          f"overhead vs torch bound: {ours_s / bound_s:.2f}x")


if __name__ == "__main__":
    main()
