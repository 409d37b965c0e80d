"""The dataset registry, embedded datasets, and datasets read from folders, CSVs and `datasets`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitbench.data import (
    CsvPairsDataset,
    HFImageDataset,
    ImageFolderDataset,
    get_dataset,
    list_datasets,
)
from vitbench.data.embedded import (
    COLOUR_RGB,
    COLOURS,
    KINDS,
    ShapesDataset,
    make_scene,
    render_scene,
)
from vitbench.errors import BadImageError, UnknownNameError, VitbenchError

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (20, 40, 230)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the Hugging Face hub, whatever the environment says."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _write_png(path: Path, colour: tuple[int, int, int], size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def _assert_one_line(error: BaseException, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --- registry --------------------------------------------------------------------------------


def test_registry_lists_embedded_and_real_names():
    names = {entry.name: entry for entry in list_datasets()}
    assert {"digits", "shapes", "imagenet", "cifar10", "cifar100", "folder", "hf", "csv"} <= set(
        names)
    assert not names["digits"].needs_data and names["imagenet"].needs_data


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(UnknownNameError) as caught:
        get_dataset("cifar-10", "train")
    _assert_one_line(caught.value, "cifar-10", "cifar10")


@pytest.mark.parametrize("name", ["imagenet", "cifar10", "folder"])
def test_real_dataset_without_data_says_what_to_pass(name):
    with pytest.raises(VitbenchError) as caught:
        get_dataset(name, "train")
    _assert_one_line(caught.value, f"dataset {name!r} needs data", "--data-dir",
                     "DIR/train/<class>", "save_to_disk")


def test_missing_data_path_is_a_one_line_error(tmp_path):
    with pytest.raises(VitbenchError) as caught:
        get_dataset("folder", "train", tmp_path / "nope")
    _assert_one_line(caught.value, "does not exist")


def test_uncached_hub_name_offline_says_how_to_supply_it():
    with pytest.raises(VitbenchError) as caught:
        get_dataset("cifar10", "train", "no-such-owner/no-such-dataset")
    _assert_one_line(caught.value, "no-such-owner/no-such-dataset", "--data-dir",
                     "save_to_disk")


# --- digits ----------------------------------------------------------------------------------


def test_digits_split_is_stratified_and_matches_sklearn():
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test = get_dataset("digits", "train"), get_dataset("digits", "val")
    assert (len(train), len(test)) == (1257, 540) and test.split == "test"
    assert train.classes == tuple("0123456789")
    assert not set(train.source_indices) & set(test.source_indices)
    for label in range(10):  # each class is split 70/30 to within one image
        total = np.sum(digits.target == label)
        assert abs(np.sum(test.labels == label) - 0.3 * total) <= 1
    np.testing.assert_array_equal(train.labels, digits.target[train.source_indices])
    for i in (0, 17, len(train) - 1):
        pixels = np.asarray(train.image(i))
        expected = np.round(digits.images[train.source_indices[i]] * 255 / 16)
        assert pixels.shape == (8, 8, 3)
        for channel in range(3):
            np.testing.assert_array_equal(pixels[..., channel], expected)
    assert train.fingerprint != test.fingerprint


# --- shapes ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_test() -> ShapesDataset:
    return ShapesDataset("test")


def test_shapes_sizes_and_determinism(shapes_test):
    train_a, train_b = ShapesDataset("train"), ShapesDataset("train")
    assert (len(train_a), len(shapes_test)) == (2000, 1000)
    assert train_a.fingerprint == "shapes-v1-train-2000" != shapes_test.fingerprint
    for i in (0, 1, 1999):
        assert train_a.image(i).tobytes() == train_b.image(i).tobytes()
        assert train_a.captions[i] == train_b.captions[i]
    assert train_a.image(0).tobytes() != shapes_test.image(0).tobytes()
    # Random access is independent of what was generated before.
    assert ShapesDataset("test", n_images=5).image(4).tobytes() == shapes_test.image(4).tobytes()


def test_shapes_labels_counts_and_presence_follow_the_objects(shapes_test):
    assert shapes_test.classes == KINDS == ShapesDataset.KINDS
    for i in range(len(shapes_test)):
        objects = shapes_test.objects(i)
        assert 1 <= len(objects) <= 4
        large = [obj for obj in objects if obj.size == "large"]
        assert len(large) == 1 and objects[0] is large[0]
        assert shapes_test.classes[shapes_test.labels[i]] == large[0].kind
        expected = [sum(obj.kind == kind for obj in objects) for kind in KINDS]
        np.testing.assert_array_equal(shapes_test.counts[i], expected)
    np.testing.assert_array_equal(shapes_test.presence, shapes_test.counts > 0)
    assert shapes_test.counts.shape == (1000, len(KINDS))
    assert np.bincount(shapes_test.labels, minlength=len(KINDS)).min() > 120  # ~200 each


def test_shapes_captions_describe_the_objects(shapes_test):
    for i in range(len(shapes_test)):
        objects, captions = shapes_test.objects(i), shapes_test.captions[i]
        assert len(captions) >= 2 and len(set(captions)) == len(captions)
        main = objects[0]
        assert captions[0].startswith(f"a large {main.colour} {main.kind}")
        for text in captions[:2]:  # the first two name every colour and kind present
            for kind in KINDS:
                assert (kind in text) == any(obj.kind == kind for obj in objects), text
            for colour in COLOURS:
                assert (colour in text) == any(obj.colour == colour for obj in objects), text


def test_shapes_render_every_object_where_the_scene_says(shapes_test):
    for i in range(len(shapes_test)):  # renders the whole test split
        image = shapes_test.image(i)
        assert image.mode == "RGB" and image.size == (64, 64)
        for obj in shapes_test.objects(i):
            assert image.getpixel((obj.x, obj.y)) == COLOUR_RGB[obj.colour]


def test_shape_scenes_are_pure_functions_of_split_and_index():
    assert make_scene("train", 7) == make_scene("train", 7)
    assert render_scene(make_scene("train", 7)).tobytes() == ShapesDataset("train").image(
        7).tobytes()


# --- ImageFolder -----------------------------------------------------------------------------


@pytest.fixture
def folder_tree(tmp_path) -> Path:
    root = tmp_path / "tree"
    for split, per_class in (("train", 3), ("val", 2)):
        for name, colour in (("cat", RED), ("dog", GREEN)):
            for k in range(per_class):
                _write_png(root / split / name / f"{k}.png", colour)
    _write_png(root / "train" / "eel" / "nested" / "0.PNG", BLUE)  # only in train
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    _write_png(root / "train" / "cat" / ".hidden.png", BLUE)
    return root


def test_image_folder_reads_classes_labels_and_images(folder_tree):
    train = get_dataset("folder", "train", folder_tree)
    assert isinstance(train, ImageFolderDataset)
    assert train.classes == ("cat", "dog", "eel")
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1, 2])
    assert train.describe(6).endswith(os.path.join("eel", "nested", "0.PNG"))
    assert train.image(6).getpixel((0, 0)) == BLUE
    assert train.image(3).getpixel((0, 0)) == GREEN
    assert train.captions is None


def test_image_folder_eval_split_aliases_and_shared_classes(folder_tree):
    val = get_dataset("imagenet", "test", folder_tree)
    assert val.split == "val" and val.name == "imagenet"
    assert val.classes == ("cat", "dog", "eel")  # "eel" has no val images, indices still agree
    np.testing.assert_array_equal(val.labels, [0, 0, 1, 1])


def test_image_folder_missing_split_lists_the_available_ones(folder_tree):
    (folder_tree / "val").rename(folder_tree / "holdout")
    with pytest.raises(VitbenchError) as caught:
        get_dataset("folder", "val", folder_tree)
    _assert_one_line(caught.value, "'val'", "holdout, train", "DIR/<split>/<class>")


def test_image_folder_fingerprint_tracks_file_changes(folder_tree):
    def fingerprint() -> str:
        return get_dataset("folder", "val", folder_tree).fingerprint

    first = fingerprint()
    assert fingerprint() == first
    image = folder_tree / "val" / "dog" / "0.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = fingerprint()
    assert touched != first
    _write_png(folder_tree / "val" / "dog" / "2.png", GREEN)
    assert fingerprint() not in (first, touched)
    assert get_dataset("folder", "train", folder_tree).fingerprint != fingerprint()


def test_image_folder_bad_image_raises_with_its_path(folder_tree):
    bad = folder_tree / "val" / "cat" / "1.png"
    bad.write_bytes(b"")
    val = get_dataset("folder", "val", folder_tree)
    with pytest.raises(BadImageError) as caught:
        val.image(1)
    assert caught.value.path == str(bad) == val.describe(1)


def test_image_folder_without_images_says_what_layout_to_use(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(VitbenchError) as caught:
        get_dataset("folder", "train", tmp_path)
    _assert_one_line(caught.value, "no image files", "DIR/<split>/<class>")


# --- CSV pairs -------------------------------------------------------------------------------


def test_csv_groups_captions_by_image(tmp_path):
    _write_png(tmp_path / "a.png", RED)
    _write_png(tmp_path / "sub" / "b.png", GREEN)
    csv = tmp_path / "pairs.csv"
    csv.write_text('image,caption\na.png,a red square\nsub/b.png,"green, plain"\n'
                   "a.png,red again\nsub/b.png,\n")
    pairs = get_dataset("csv", "test", csv)
    assert isinstance(pairs, CsvPairsDataset)
    assert len(pairs) == 2 and pairs.classes == ()
    np.testing.assert_array_equal(pairs.labels, [-1, -1])
    assert pairs.captions == [["a red square", "red again"], ["green, plain"]]
    assert pairs.image(1).getpixel((0, 0)) == GREEN
    assert pairs.describe(0) == str(tmp_path / "a.png")


def test_csv_alternative_columns_split_column_and_tsv(tmp_path):
    _write_png(tmp_path / "a.png", RED)
    _write_png(tmp_path / "b.png", BLUE)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("filepath\ttext\tsplit\na.png\tred\ttrain\n"
                   f"{tmp_path / 'b.png'}\tblue\ttest\n")
    test = get_dataset("csv", "val", tsv)
    assert test.split == "test" and test.captions == [["blue"]]
    assert test.image(0).getpixel((0, 0)) == BLUE
    assert get_dataset("csv", "train", tsv).captions == [["red"]]


def test_csv_fingerprint_tracks_images(tmp_path):
    _write_png(tmp_path / "a.png", RED)
    csv = tmp_path / "pairs.csv"
    csv.write_text("image,caption\na.png,red\n")
    first = get_dataset("csv", "test", csv).fingerprint
    _write_png(tmp_path / "a.png", GREEN, size=9)
    assert get_dataset("csv", "test", csv).fingerprint != first


def test_csv_missing_columns_and_files_are_one_line_errors(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("path,description\na.png,red\n")
    with pytest.raises(VitbenchError) as caught:
        get_dataset("csv", "test", csv)
    _assert_one_line(caught.value, "no image column", "image, filepath", "path, description")
    csv.write_text("image,caption\nmissing.png,red\n")
    with pytest.raises(VitbenchError) as caught:
        get_dataset("csv", "test", csv)
    _assert_one_line(caught.value, "none of the images", "relative to the CSV")


# --- Hugging Face datasets -------------------------------------------------------------------


@pytest.fixture
def hf_images() -> list[Image.Image]:
    return [Image.new("RGB", (6, 6), colour) for colour in (RED, GREEN, BLUE, RED)]


def _hf_dataset(images, labels, captions=None):
    import datasets

    columns = {"img": images, "label": labels}
    features = {"img": datasets.Image(), "label": datasets.ClassLabel(names=["red", "other"])}
    if captions is not None:
        columns["caption"] = captions
        features["caption"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def test_hf_dataset_dict_from_disk(tmp_path, hf_images):
    import datasets

    train = _hf_dataset(hf_images, [0, 1, 1, 0], ["r", "g", "b", "r2"])
    test = _hf_dataset(hf_images[:2], [0, 1])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(tmp_path / "dd")
    loaded = get_dataset("cifar10", "train", tmp_path / "dd")
    assert isinstance(loaded, HFImageDataset)
    assert loaded.classes == ("red", "other")
    np.testing.assert_array_equal(loaded.labels, [0, 1, 1, 0])
    assert loaded.captions == [["r"], ["g"], ["b"], ["r2"]]
    assert [loaded.image(i).getpixel((0, 0)) for i in range(4)] == [RED, GREEN, BLUE, RED]
    val = get_dataset("cifar10", "validation", tmp_path / "dd")
    assert val.split == "test" and len(val) == 2 and val.captions is None
    assert val.fingerprint != loaded.fingerprint and val.fingerprint.startswith("cifar10-test-")
    with pytest.raises(VitbenchError) as caught:
        get_dataset("hf", "unlabeled", tmp_path / "dd")
    _assert_one_line(caught.value, "'unlabeled'", "test, train")


def test_hf_single_dataset_and_bad_rows(tmp_path, hf_images):
    import datasets

    table = _hf_dataset(hf_images, [0, 1, 1, 0])
    table = table.cast_column("img", datasets.Image(decode=False))
    rows = table.to_dict()
    rows["img"][2] = {"bytes": b"\x89PNG broken", "path": None}
    table = datasets.Dataset.from_dict(rows, features=table.features)
    table.save_to_disk(tmp_path / "single")
    loaded = get_dataset("hf", "train", tmp_path / "single")
    assert len(loaded) == 4 and loaded.image(1).getpixel((0, 0)) == GREEN
    with pytest.raises(BadImageError) as caught:
        loaded.image(2)
    assert caught.value.path == "hf/train[2]"
    # an unsplit Dataset must not also serve as the test split (train == test leakage)
    with pytest.raises(VitbenchError, match="DatasetDict"):
        get_dataset("hf", "test", tmp_path / "single")


def test_hf_column_overrides_and_string_labels(tmp_path, hf_images):
    import datasets

    table = datasets.Dataset.from_dict(
        {"picture": hf_images[:3], "animal": ["dog", "cat", "dog"]},
        features=datasets.Features({"picture": datasets.Image(),
                                    "animal": datasets.Value("string")}))
    table.save_to_disk(tmp_path / "strings")
    loaded = HFImageDataset(tmp_path / "strings", "train", label_column="animal")
    assert loaded.classes == ("cat", "dog")
    np.testing.assert_array_equal(loaded.labels, [1, 0, 1])
    unlabeled = HFImageDataset(tmp_path / "strings", "train")
    assert unlabeled.classes == () and set(unlabeled.labels) == {-1}
    assert unlabeled.image(2).getpixel((0, 0)) == BLUE
