"""Shared by the benchmark scripts: timing, thread limits, and the machine line they print."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import torch
from threadpoolctl import threadpool_limits


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Fastest of `repeats` runs (seconds) and the last result: damps bursts of other work."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def limit_threads(n: int) -> None:
    """Give torch, the BLAS behind numpy/scikit-learn and faiss the same thread count."""
    import faiss

    torch.set_num_threads(n)
    threadpool_limits(n)  # stays in force: the handle is not used as a context
    faiss.omp_set_num_threads(n)


def machine_line(threads: int) -> str:
    return (f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {threads} threads; "
            f"torch {torch.__version__}; 1-min load average at start "
            f"{os.getloadavg()[0]:.2f} (other work on the machine skews timings)")
