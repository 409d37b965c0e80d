"""The notebook API: load, evaluate, list_models, list_tasks."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

import vitbench
from vitbench.data import get_dataset
from vitbench.errors import VitbenchError


def test_evaluate_equals_sklearn_knn_on_the_same_pixels(tmp_path):
    frame = vitbench.evaluate("pixels", "digits_knn", pretrained="random", ks=(5,),
                              cache_dir=str(tmp_path))
    assert list(frame.metric) == ["top1_k5"] and frame.resolution.item() == 32
    encoder = vitbench.load("pixels", resolution=32)
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")

    def pixels(dataset):
        return torch.stack([encoder.transform(dataset.image(i)) for i in range(len(dataset))]
                           ).reshape(len(dataset), -1).numpy()

    knn = KNeighborsClassifier(5, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1 - d) / 0.07))
    knn.fit(pixels(train), train.labels)
    expected = 100 * np.mean(knn.predict(pixels(test)) == test.labels)
    assert frame.value.item() == pytest.approx(expected, abs=1e-9)


def test_evaluate_an_encoder_object_on_several_tasks(tmp_path):
    encoder = vitbench.load("test_vit", pretrained=False, resolution=32)
    frame = vitbench.evaluate(encoder, ["digits_knn", "digits_linear"], cache_dir=str(tmp_path))
    assert set(frame.task) == {"digits_knn", "digits_linear"}
    assert (frame.weights == "random:random").all() and (frame.n_eval == 540).all()
    with pytest.raises(VitbenchError, match="accepted"):
        vitbench.evaluate(encoder, "digits_knn", kk=3)


def test_lists():
    assert {"pixels", "test_vit", "vit_s16", "eva02_l", "clip_b32"} <= set(vitbench.list_models())
    assert vitbench.list_models(family="eva02") == ["eva02_t", "eva02_s", "eva02_b", "eva02_l"]
    assert {"digits_knn", "imagenet_linear", "cifar100_knn"} <= set(vitbench.list_tasks())


def test_real_data_task_from_a_save_to_disk_directory(tmp_path):
    """cifar10_knn on a DatasetDict saved with save_to_disk, as `--data-dir DIR` reads it."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 2, n)
        images = [Image.fromarray(np.full((12, 12, 3), (200, 30, 30) if y else (30, 30, 200),
                                          np.uint8) + rng.integers(0, 20, (12, 12, 3), np.uint8))
                  for y in labels]
        features = datasets.Features({"img": datasets.Image(),
                                      "label": datasets.ClassLabel(names=["blue", "red"])})
        return datasets.Dataset.from_dict({"img": images, "label": labels.tolist()},
                                          features=features)

    datasets.DatasetDict({"train": split(20), "test": split(10)}).save_to_disk(tmp_path / "c10")
    frame = vitbench.evaluate("pixels", "cifar10_knn", data_dir=str(tmp_path / "c10"),
                              resolution=8, ks=(3,), cache_dir=str(tmp_path / "cache"))
    assert frame.n_train.item() == 20 and frame.n_eval.item() == 10
    assert frame.value.item() == 100.0  # colour separates the classes perfectly
