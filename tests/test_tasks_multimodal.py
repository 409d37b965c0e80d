"""The zero-shot, retrieval and few-shot tasks end to end (issue 5): rows from `run_task`
against the same numbers computed here from the encoder's own outputs, bootstrap intervals in
the rows, and results CSVs of the previous layout upgraded in place."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app
from vitbench.data import get_dataset
from vitbench.errors import VitbenchError
from vitbench.evals.protocols import few_shot_indices
from vitbench.evals.tasks import get_task, run_task
from vitbench.features import ExtractOptions
from vitbench.results import COLUMNS, append_rows, read_rows
from vitbench.zoo.adapters.timm import TimmEncoder

OPTIONS = ExtractOptions(use_cache=False, progress=False)


@dataclass(kw_only=True, repr=False)
class BagOfWords(TimmEncoder):
    """test_vit's image tower with a joint space: images project linearly, texts are sums of
    hashed word vectors (a dual encoder small enough for the default suite)."""

    def _forward(self, pixels, layers=()):
        out = super()._forward(pixels, layers)
        projection = torch.randn(out.pooled.shape[1], 16, generator=torch.Generator()
                                 .manual_seed(0))
        return replace(out, projected=out.pooled @ projection)

    def _text(self, texts):
        return torch.stack([sum(_word(w) for w in text.split()) for text in texts])


def _word(word: str) -> torch.Tensor:
    seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
    return torch.randn(16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def dual():
    base = vitbench.load("test_vit", pretrained=False, resolution=32)
    return BagOfWords(spec=replace(base.spec, projection_dim=16), loaded=base.loaded,
                      transform=base.transform, resolution=32, model=base.model)


def _eval_images(encoder, dataset) -> np.ndarray:
    pixels = torch.stack([encoder.transform(dataset.image(i)) for i in range(len(dataset))])
    return torch.cat([encoder.encode_image(c).projected for c in pixels.split(256)]).numpy()


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _values(rows) -> dict[str, float]:
    return {r.metric: r.value for r in rows}


def test_zero_shot_task_equals_the_formula_on_the_encoders_outputs(dual):
    rows = run_task(get_task("digits_zeroshot"), dual, options=OPTIONS)
    dataset = get_dataset("digits", "test")
    images = _unit(_eval_images(dual, dataset))
    classes = _unit(dual.encode_text([f"the number {c}" for c in dataset.classes]).numpy())
    predicted = (images @ classes.T).argmax(1)
    values = _values(rows)
    assert values["top1"] == pytest.approx(100 * np.mean(predicted == dataset.labels))
    recalls = [np.mean(predicted[dataset.labels == c] == c) for c in range(10)]
    assert values["mean_per_class_recall"] == pytest.approx(100 * np.mean(recalls))
    for row in rows:  # every metric carries its 95% interval around the value
        assert row.low <= row.value <= row.high and row.high - row.low < 20


def test_retrieval_task_uses_every_caption_of_every_image(dual):
    rows = run_task(get_task("digits_retrieval").with_overrides({"bootstrap": 0}), dual,
                    options=OPTIONS)
    dataset = get_dataset("digits", "test")
    images = _unit(_eval_images(dual, dataset))
    owner = [i for i, caps in enumerate(dataset.captions) for _ in caps]
    texts = _unit(dual.encode_text([c for caps in dataset.captions for c in caps]).numpy())
    sims = texts @ images.T
    # text -> image R@1: the caption's own image has the highest similarity (no ties here)
    t2i = np.mean(sims.argmax(1) == np.array(owner))
    values = _values(rows)
    assert values["text_to_image_r1"] == pytest.approx(100 * t2i)
    assert rows[0].n_eval == len(dataset) and rows[0].low is None
    assert values["image_to_text_r1"] <= values["image_to_text_r5"] <= values[
        "image_to_text_r10"]


def test_few_shot_task_is_the_mean_and_std_over_seeds(dual):
    task = get_task("digits_fewshot").with_overrides({"shots": (2,), "seeds": 2,
                                                      "method": "knn"})
    (row,) = run_task(task, dual, options=OPTIONS)
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")

    def pooled(dataset):
        pixels = torch.stack([dual.transform(dataset.image(i)) for i in range(len(dataset))])
        return _unit(torch.cat([dual.encode_image(c).pooled for c in pixels.split(256)])
                     .numpy())

    train_x, test_x = pooled(train), pooled(test)
    scores = []
    for seed in range(2):
        rows = few_shot_indices(train.labels, 2, seed)
        votes = np.zeros((len(test_x), 10))  # DINO kNN: k = all 20 examples, exp(sim / 0.07)
        sims = test_x @ train_x[rows].T
        for j, label in enumerate(train.labels[rows]):
            votes[:, label] += np.exp(sims[:, j] / 0.07)
        scores.append(100 * np.mean(votes.argmax(1) == test.labels))
    assert row.metric == "top1_2shot" and row.value == pytest.approx(np.mean(scores), abs=1e-4)
    assert row.high - row.value == pytest.approx(np.std(scores), abs=1e-4)


def test_image_only_encoder_and_bad_settings_are_one_line_errors():
    encoder = vitbench.load("test_vit", pretrained=False, resolution=32)
    with pytest.raises(VitbenchError, match="no text tower"):
        run_task(get_task("shapes_zeroshot"), encoder, options=OPTIONS)
    with pytest.raises(VitbenchError, match="unknown zeroshot setting"):
        get_task("shapes_zeroshot").with_overrides({"ks": (1,)})
    result = CliRunner().invoke(app, ["eval", "--model", "test_vit", "--task",
                                      "digits_retrieval", "--weights", "random", "--out",
                                      "/dev/null"])
    assert result.exit_code == 1 and "no text tower" in result.output


def test_results_csv_of_the_previous_layout_gains_the_interval_columns(tmp_path, dual):
    rows = run_task(get_task("digits_zeroshot"), dual, options=OPTIONS)
    path = tmp_path / "old.csv"
    old_columns = COLUMNS[:COLUMNS.index("low")]
    path.write_text(",".join(old_columns) + "\n" + ",".join(["x"] * len(old_columns)) + "\n")
    append_rows(path, rows)
    frame = read_rows(path)
    assert list(frame.columns) == COLUMNS and len(frame) == 1 + len(rows)
    assert frame["low"].isna().iloc[0] and frame["low"].iloc[1] == pytest.approx(rows[0].low)
    (tmp_path / "bad.csv").write_text("model,other\n")
    with pytest.raises(VitbenchError, match="header differs"):
        append_rows(tmp_path / "bad.csv", rows)


def test_cli_templates_file_reaches_the_zero_shot_settings(tmp_path, monkeypatch):
    import vitbench.runner as runner

    seen = {}

    def fake_run_eval(plan, on_rows):
        seen.update(plan.overrides)
        return []

    monkeypatch.setattr(runner, "run_eval", fake_run_eval)
    good = tmp_path / "t.txt"
    good.write_text("a photo of a {}.\n\nan image of the {}\n")
    args = ["eval", "--model", "clip_b32", "--task", "digits_zeroshot", "--out",
            str(tmp_path / "r.csv"), "--templates"]
    assert CliRunner().invoke(app, [*args, str(good)]).exit_code == 0
    assert seen["templates"] == ("a photo of a {}.", "an image of the {}")
    (tmp_path / "bad.txt").write_text("no placeholder\n")
    bad = CliRunner().invoke(app, [*args, str(tmp_path / "bad.txt")])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "{}" in bad.output
    assert CliRunner().invoke(app, [*args, "cifar100"]).exit_code == 0  # a named set
    assert seen["template_set"] == "cifar100" and seen["templates"] == ()
    unknown = CliRunner().invoke(app, [*args, "cifar1000"])
    assert unknown.exit_code == 1 and unknown.output.count("\n") == 1
    assert "cifar100" in unknown.output


def test_template_sets_are_clip_s_per_dataset_prompts():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    from vitbench.evals import template_set, template_sets
    from vitbench.evals.tasks import get_task

    # ImageNet's set is the 80 OpenAI prompts open_clip ships, written out independently
    assert template_set("imagenet1k") == tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    cifar = template_set("cifar10")
    assert len(cifar) == 18 and "a blurry photo of a {}." in cifar
    assert all("{}" in t and "{c}" not in t for ts in template_sets().values() for t in ts)
    for task, expected in (("imagenet_zeroshot", "imagenet1k"), ("cifar10_zeroshot", "cifar10"),
                           ("cifar100_zeroshot", "cifar100")):
        assert get_task(task).settings.template_set == expected
    with pytest.raises(VitbenchError, match="unknown template set 'cifar1000'"):
        template_set("cifar1000")


def test_a_clip_run_directory_is_a_dual_encoder_for_zero_shot(tmp_path):
    """`vitbench.load(DIR)` of an image-text run keeps the run's text tower and projections."""
    from vitbench.pretrain.trainer import TrainConfig, load_objective, train

    out = train(TrainConfig("clip", "test_vit", data="digits", steps=2, batch_size=8,
                            resolution=32, out=str(tmp_path / "clip")))
    encoder, objective = vitbench.load(str(out)), load_objective(out)
    assert encoder.spec.has_text
    texts = ["the number 3", "the number 7", "the number 1"]
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_text(texts), objective.embed_text(texts))
        torch.testing.assert_close(encoder.encode_text(texts, batch_size=2),
                                   encoder.encode_text(texts))  # batching changes nothing
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(encoder.encode_image(x).projected, objective.embed_image(x))
    rows = run_task(get_task("digits_zeroshot"), encoder, options=OPTIONS)
    assert {r.metric for r in rows} == {"top1", "top5", "mean_per_class_recall"}
    supervised = train(TrainConfig("supervised", "test_vit", data="digits", steps=1,
                                   batch_size=8, resolution=32, out=str(tmp_path / "sup")))
    assert not vitbench.load(str(supervised)).spec.has_text  # no joint space to keep


def _karpathy(root, name: str, nested: bool) -> list[list[str]]:
    """A Karpathy caption file over 12 shapes images (4 test, 2 restval, 6 train)."""
    shapes = get_dataset("shapes", "test")
    folder = root / ("val2014" if nested else "flickr30k-images")
    folder.mkdir(parents=True)
    images, test_captions = [], []
    for i in range(12):
        split = "test" if i < 4 else "restval" if i < 6 else "train"
        filename = f"img{i}.jpg"
        shapes.image(i).save(folder / filename)
        sentences = [{"raw": f" {c} "} for c in shapes.captions[i]]
        record = {"filename": filename, "split": split, "sentences": sentences}
        if nested:
            record["filepath"] = "val2014"
        images.append(record)
        if split == "test":
            test_captions.append(list(shapes.captions[i]))
    (root / name).write_text(json.dumps({"images": images}))
    return test_captions


@pytest.mark.parametrize("name,nested", [("dataset_coco.json", True),
                                         ("dataset_flickr30k.json", False)])
def test_karpathy_caption_files_read_their_splits(tmp_path, name, nested):
    test_captions = _karpathy(tmp_path, name, nested)
    dataset = get_dataset("coco", "test", tmp_path)
    assert len(dataset) == 4 and dataset.captions == test_captions  # captions stripped
    assert np.asarray(dataset.image(0)).shape == (64, 64, 3)
    assert len(get_dataset("coco", "train", tmp_path / name)) == 8  # train + restval
    assert get_dataset("coco", "val", tmp_path).split == "test"  # eval splits stand in
    with pytest.raises(VitbenchError, match="minival"):
        get_dataset("coco", "minival", tmp_path)


def test_coco_retrieval_task_reads_a_karpathy_file(tmp_path, dual):
    _karpathy(tmp_path, "dataset_coco.json", nested=True)
    rows = run_task(get_task("coco_retrieval"), dual, data_dir=tmp_path, options=OPTIONS)
    values = _values(rows)
    assert rows[0].n_eval == 4 and rows[0].dataset == "coco"
    assert values["image_to_text_r10"] == 100.0  # 4 images x 3 captions: all within top 10
    with pytest.raises(VitbenchError, match="dataset_coco.json"):
        run_task(get_task("coco_retrieval"), dual, options=OPTIONS)  # no --data-dir
