"""`vitbench compare` (issue 5): a paired bootstrap of two encoders on the same examples."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app
from vitbench.data import get_dataset
from vitbench.evals.protocols import knn_classify
from vitbench.evals.tasks import compare_on_task, get_task
from vitbench.features import ExtractOptions, extract_features

OPTIONS = ExtractOptions(progress=False)


def _knn_hits(encoder) -> np.ndarray:
    """digits_knn's top1_k20 hits, computed here from the encoder's pooled features."""
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    x_train = extract_features(encoder, train, ("pooled",), OPTIONS).get("pooled")
    x_test = extract_features(encoder, test, ("pooled",), OPTIONS).get("pooled")
    predicted = knn_classify(x_train, train.labels, x_test, k=20, temperature=0.07)
    return (predicted == test.labels).astype(float)


def test_compare_is_a_paired_bootstrap_of_the_per_example_hits():
    a = vitbench.load("pixels", pretrained=False, resolution=32)
    b = vitbench.load("test_vit", pretrained=False, resolution=32)
    result = compare_on_task(get_task("digits_knn"), a, b, options=OPTIONS, samples=500)
    hits_a, hits_b = _knn_hits(a), _knn_hits(b)
    assert result.n == len(hits_a) == 540
    assert (result.a, result.b) == pytest.approx((100 * hits_a.mean(), 100 * hits_b.mean()))
    assert result.paired.delta == pytest.approx(hits_b.mean() - hits_a.mean())
    # the same resampled indices applied to the hits written out here
    index = np.random.default_rng(0).integers(0, 540, size=(500, 540))
    deltas = hits_b[index].mean(1) - hits_a[index].mean(1)
    assert result.paired.low == pytest.approx(np.quantile(deltas, 0.025))
    assert result.paired.significant  # raw pixels beat a random ViT on digits by far

    same = compare_on_task(get_task("digits_knn"), a, a, options=OPTIONS, samples=200)
    assert same.paired.delta == 0 and not same.paired.significant and same.paired.p_value == 1


def test_cli_compare_prints_the_verdict_and_refuses_what_it_cannot_test():
    runner = CliRunner()
    out = runner.invoke(app, ["compare", "pixels", "test_vit", "--task", "digits_knn",
                              "--weights", "random", "--samples", "200"])
    assert out.exit_code == 0, out.output
    assert "B - A" in out.output and ": significant" in out.output
    out = runner.invoke(app, ["compare", "pixels", "test_vit", "--task", "digits_fewshot",
                              "--weights", "random"])
    assert out.exit_code == 1 and "no paired test" in out.output
    out = runner.invoke(app, ["compare", "pixels", "nope", "--task", "digits_knn"])
    assert out.exit_code == 2 and "Traceback" not in out.output
