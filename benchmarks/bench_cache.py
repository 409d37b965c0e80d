"""The second task on the same model and data must not re-encode.

Runs digits_knn then digits_linear (and shapes_knn then shapes_linear) for one encoder with
a fresh cache and reports the encode time of each task and their ratio.

    python benchmarks/bench_cache.py [--model vit_s16]
"""

import argparse
import tempfile
import time

import vitbench
from vitbench.evals.tasks import get_task, run_task
from vitbench.features import ExtractOptions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vit_s16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        options = ExtractOptions(cache_dir=cache, progress=False)
        for first, second in (("digits_knn", "digits_linear"), ("shapes_knn", "shapes_linear")):
            encoder = vitbench.load(args.model, pretrained=False,
                                    resolution=get_task(first).resolution)
            a, a_features = timed(first, encoder, options)
            b, b_features = timed(second, encoder, options)
            print(f"{args.model} {first}: features {a_features:.2f}s (cache_hit={a.cache_hit})"
                  f" -> {second}: features {b_features:.3f}s (cache_hit={b.cache_hit}); "
                  f"ratio {b_features / a_features:.4f}")


def timed(task, encoder, options):
    """Wall time of a task minus its protocol: data, encoding or cache reading."""
    start = time.perf_counter()
    row = run_task(get_task(task), encoder, options=options)[0]
    return row, time.perf_counter() - start - row.protocol_seconds


if __name__ == "__main__":
    main()
