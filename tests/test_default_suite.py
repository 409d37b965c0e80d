"""The README's main job, as a user runs it: `vitbench eval` with no arguments, offline."""

import os
import subprocess
import sys

import pandas as pd
import pytest


@pytest.mark.slow
def test_default_suite_runs_offline_and_writes_the_leaderboard(tmp_path):
    # the session cache (conftest.py): the CLIP recipe trains once for this test and the
    # learns tests that use it (pico_clip_run)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "vitbench.cli", "eval"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = pd.read_csv(tmp_path / "leaderboards" / "measured" / "embedded.csv")
    models = {"pixels", "test_vit", "vit_s16", "vit_pico", "pico-clip-digits"}
    assert set(rows.model) == models
    image_tasks = {"digits_knn", "digits_linear", "shapes_knn", "shapes_linear", "shapes_mllm"}
    assert set(rows[rows.model != "pico-clip-digits"].task) == image_tasks  # no text towers
    text_tasks = {f"{d}_{p}" for d in ("digits", "shapes") for p in ("zeroshot", "retrieval")}
    assert set(rows.task) == image_tasks | text_tasks
    assert set(rows[rows.model != "pico-clip-digits"].weights) == {"none:none", "random:random"}
    assert rows[rows.model == "pico-clip-digits"].weights.str.startswith("file:").all()
    # 5 models x (4 kNN ks + linear top1/top5 on digits + 4 ks + top1 on shapes + the visual-
    # tokenizer protocol's 7 metrics and its blind control's 7), and for the CLIP run, on
    # digits and shapes, zero-shot top1/top5/per-class recall and Recall@1/5/10 both ways
    assert len(rows) == 5 * (4 + 2 + 4 + 1 + 2 * 7) + 2 * (3 + 6)

    def knn(model):
        return rows[(rows.model == model) & (rows.metric == "top1_k20") &
                     (rows.task == "digits_knn")].value.item()
    assert all(knn(model) > 30 for model in models)  # chance: 10
    # the encoder vitbench pretrained beats its own architecture with random weights
    assert knn("pico-clip-digits") > knn("vit_pico") + 20
    zero_shot = rows[(rows.task == "digits_zeroshot") & (rows.metric == "top1")].iloc[0]
    assert zero_shot.value > 30 and zero_shot.low < zero_shot.value < zero_shot.high  # chance 10
    mllm = rows[rows.task == "shapes_mllm"].pivot_table("value", "model", "metric")
    # the blind control is one run shared by the suite; an encoder's tokens reach the LM
    assert mllm.blind_vqa_acc.nunique() == 1
    assert (mllm.vqa_acc > mllm.blind_vqa_acc).all()
    print(result.stdout)  # the leaderboard, visible with -s
    assert "shapes_linear/top1" in result.stdout
