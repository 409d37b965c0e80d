"""The visual-tokenizer tasks end to end (issue 5): `shapes_mllm` rows equal the protocol run
here on the same tokens and questions, the blind control is the same pipeline on zeroed
tokens, and the VQAv2 / GVT-style readers feed `*_mllm` tasks on real-data layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vitbench
from vitbench.data import embedded, get_dataset
from vitbench.data.questions import shapes_questions
from vitbench.errors import VitbenchError
from vitbench.evals.protocols.mllm import MllmSettings, mllm_evaluate
from vitbench.evals.tasks import get_task, run_task
from vitbench.features import ExtractOptions, extract_features

OPTIONS = ExtractOptions(progress=False)
TINY = {"stage1_steps": 5, "stage2_steps": 5, "max_new_tokens": 6}


@pytest.fixture()
def small_shapes(monkeypatch):
    """shapes with 60 train and 30 test images (the fingerprint includes the size)."""
    monkeypatch.setitem(embedded.SHAPES_SPLITS, "train", 60)
    monkeypatch.setitem(embedded.SHAPES_SPLITS, "test", 30)


def test_shapes_mllm_rows_are_the_protocol_on_the_encoders_tokens(small_shapes):
    encoder = vitbench.load("pixels", pretrained=False, resolution=64)
    rows = run_task(get_task("shapes_mllm"), encoder, options=OPTIONS, overrides=TINY)
    values = {r.metric: r.value for r in rows}
    splits = [get_dataset("shapes", s) for s in ("train", "test")]
    tokens = [extract_features(encoder, d, ("tokens",), OPTIONS).get("tokens") for d in splits]
    questions = [shapes_questions(d) for d in splits]
    settings = MllmSettings(**TINY)
    direct = mllm_evaluate(tokens[0], questions[0], tokens[1], questions[1], settings)
    blind = mllm_evaluate(np.zeros((60, 1, 1)), questions[0], np.zeros((30, 1, 1)),
                          questions[1], settings)
    for name in ("vqa_acc", "oc_acc", "mci_acc", "oc_mae", "caption_cider", "caption_bleu4"):
        assert values[name] == pytest.approx(getattr(direct, name))
        assert values[f"blind_{name}"] == pytest.approx(getattr(blind, name))
    assert rows[0].n_train == 60 and rows[0].n_eval == 30
    oc = next(r for r in rows if r.metric == "oc_acc")
    assert oc.low <= oc.value <= oc.high


def test_joint_tuning_tunes_a_copy_and_is_recorded(small_shapes):
    import torch

    encoder = vitbench.load("vit_pico", pretrained=False, resolution=32)
    before = [p.detach().clone() for m in encoder.modules() for p in m.parameters()]
    overrides = {**TINY, "blind_control": False}
    frozen = run_task(get_task("shapes_mllm"), encoder, options=OPTIONS, overrides=overrides)
    tuned = run_task(get_task("shapes_mllm"), encoder, options=OPTIONS,
                     overrides={**overrides, "joint_tuning": True})
    after = [p for m in encoder.modules() for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert '"joint_tuning": true' in tuned[0].settings
    assert '"joint_tuning": false' in frozen[0].settings
    assert {r.metric for r in tuned} == {r.metric for r in frozen}
    with pytest.raises(VitbenchError, match="joint_tuning"):  # not a kNN setting
        run_task(get_task("shapes_knn"), encoder, options=OPTIONS,
                 overrides={"joint_tuning": True})


def _vqa_files(root, images):
    (root / "val2014").mkdir()
    questions, annotations = [], []
    for i, image in enumerate(images):
        image.save(root / "val2014" / f"COCO_val2014_{i:012d}.jpg")
        for j, (question, answer) in enumerate((("What colour?", "red"), ("Is it big?", "yes"))):
            questions.append({"image_id": i, "question": question, "question_id": 10 * i + j})
            annotations.append({"question_id": 10 * i + j, "image_id": i,
                                "answers": [{"answer": answer}] * 7 + [{"answer": "no"}] * 3})
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({"questions": questions}))
    (root / "v2_mscoco_val2014_annotations.json").write_text(
        json.dumps({"annotations": annotations}))


def test_vqav2_and_gvt_files_become_question_datasets(tmp_path):
    shapes = get_dataset("shapes", "test")
    _vqa_files(tmp_path, [shapes.image(i) for i in range(3)])
    vqa = get_dataset("vqav2", "val", tmp_path)
    assert len(vqa) == 3 and len(vqa.questions) == 6
    assert vqa.questions[3].image == 1 and vqa.questions[3].answers.count("yes") == 7
    assert np.asarray(vqa.image(2)).shape == (64, 64, 3)

    gvt = tmp_path / "gvt"
    gvt.mkdir()
    shapes.image(0).save(gvt / "a.png")
    (gvt / "val.json").write_text(json.dumps([
        {"image": "a.png", "question": "How many circles are there in the image?",
         "answer": 2, "type": "oc"},
        {"image": "a.png", "question": "Does a cross exist in the image?", "answer": "no",
         "type": "mci"}]))
    dataset = get_dataset("gvt", "test", gvt)  # "test" finds val.json
    assert len(dataset) == 1 and [q.answers for q in dataset.questions] == [("2",), ("no",)]
    (gvt / "val.json").write_text(json.dumps([{"image": "a.png", "question": "?",
                                               "answer": "x", "type": "poem"}]))
    with pytest.raises(VitbenchError, match="unknown question type 'poem'"):
        get_dataset("gvt", "val", gvt)
    with pytest.raises(VitbenchError, match="no question file"):
        get_dataset("gvt", "train", gvt)


def test_vqav2_mllm_task_runs_on_the_official_layout(tmp_path):
    shapes = get_dataset("shapes", "test")
    _vqa_files(tmp_path, [shapes.image(i) for i in range(4)])
    for name in ("questions", "annotations"):  # the same files serve as the train split
        source = tmp_path / ("v2_OpenEnded_mscoco_val2014_questions.json" if name ==
                             "questions" else "v2_mscoco_val2014_annotations.json")
        (tmp_path / source.name.replace("val2014", "train2014")).write_text(source.read_text())
    (tmp_path / "train2014").symlink_to(tmp_path / "val2014")
    for i in range(4):
        (tmp_path / "val2014" / f"COCO_train2014_{i:012d}.jpg").symlink_to(
            tmp_path / "val2014" / f"COCO_val2014_{i:012d}.jpg")
    encoder = vitbench.load("pixels", pretrained=False, resolution=64)
    rows = run_task(get_task("vqav2_mllm"), encoder, data_dir=tmp_path, options=OPTIONS,
                    overrides={**TINY, "blind_control": False, "stage1_steps": 0})
    assert {r.metric for r in rows} == {"vqa_acc"} and rows[0].n_eval == 4


def test_cli_joint_tuning_flag_reaches_the_settings(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import vitbench.runner as runner
    from vitbench.cli import app

    seen = {}
    monkeypatch.setattr(runner, "run_eval", lambda plan, on_rows: seen.update(plan.overrides)
                        or [])
    args = ["eval", "--model", "vit_pico", "--task", "shapes_mllm", "--out",
            str(tmp_path / "r.csv")]
    assert CliRunner().invoke(app, args).exit_code == 0 and "joint_tuning" not in seen
    assert CliRunner().invoke(app, [*args, "--joint-tuning"]).exit_code == 0
    assert seen["joint_tuning"] is True
