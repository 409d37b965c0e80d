"""Supervised and CLIP pretraining learn on the embedded digits (slow; see learns_harness).

The CLIP settings are those of the default suite's pico-clip-digits recipe (pretrain/recipes.py).
"""

import pytest
from learns_harness import check_learns


@pytest.mark.slow
def test_supervised_learns(tmp_path):
    result = check_learns(tmp_path, "supervised", steps=300, batch_size=64, lr=1e-3,
                          warmup_steps=20)
    assert result.knn_trained > result.knn_random + 0.1


@pytest.mark.slow
def test_clip_learns(tmp_path):
    result = check_learns(tmp_path, "clip", image_text=True, steps=200, batch_size=128,
                          lr=1e-3, warmup_steps=20)
    assert result.knn_trained > result.knn_random + 0.1
    assert result.zero_shot > 2 * result.chance
