"""Supervised and CLIP pretraining learn on the embedded digits (slow; see learns_harness).

The CLIP settings are those of the default suite's pico-clip-digits recipe (pretrain/recipes.py).
"""

import pytest
from learns_harness import check_learns, measure_run


@pytest.mark.slow
def test_supervised_learns(tmp_path):
    result = check_learns(tmp_path, "supervised", steps=300, batch_size=64, lr=1e-3,
                          warmup_steps=20)
    assert result.knn_trained > result.knn_random + 0.1


@pytest.mark.slow
def test_clip_learns(pico_clip_run):
    # the default suite's recipe: 300 steps, batch 128, lr 1e-3, 20 warmup steps
    result = measure_run(pico_clip_run, "clip", image_text=True)
    assert result.knn_trained > result.knn_random + 0.2
    assert result.zero_shot > 3 * result.chance
