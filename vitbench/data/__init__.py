"""The dataset registry: `get_dataset(name, split, data_dir)` returns an `ImageDataset`.

Embedded datasets ("digits", "shapes") need nothing. Real ones read `data_dir`, whose form
picks the loader:

- a directory with `dataset_dict.json`, `dataset_info.json` or `state.json`: a datasets
  `save_to_disk` directory (`HFImageDataset`);
- a directory of webdataset `.tar` shards (`DIR/<split>/*.tar`, or `DIR/*.tar` as "train"):
  `ShardDataset`, image-text samples for pretraining;
- any other directory: an ImageFolder tree `DIR/<split>/<class>/<images>`;
- a directory with Karpathy's `dataset_coco.json` / `dataset_flickr30k.json`, or that file:
  COCO / Flickr30k captions in Karpathy's splits (`KarpathyCaptionsDataset`);
- a `.csv` / `.tsv` file: image-caption pairs (`CsvPairsDataset`);
- a string that is not a path but looks like "owner/name": a Hugging Face hub dataset.

Bad images are not filtered here: `image(i)` raises `BadImageError` and the feature extractor
decides whether to fail or skip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vitbench.data.base import EVAL_SPLITS, ImageDataset, resolve_split
from vitbench.data.captions import KarpathyCaptionsDataset, karpathy_file
from vitbench.data.decode import decode_image, to_rgb
from vitbench.data.embedded import DigitsDataset, ShapesDataset
from vitbench.data.folders import CsvPairsDataset, ImageFolderDataset
from vitbench.data.hf import HFImageDataset
from vitbench.data.shards import ShardDataset, is_shard_dir
from vitbench.errors import UnknownNameError, VitbenchError

__all__ = [
    "EVAL_SPLITS",
    "CsvPairsDataset",
    "DatasetEntry",
    "DigitsDataset",
    "HFImageDataset",
    "ImageDataset",
    "ImageFolderDataset",
    "KarpathyCaptionsDataset",
    "ShapesDataset",
    "decode_image",
    "get_dataset",
    "list_datasets",
    "resolve_split",
    "to_rgb",
]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset name.

    Attributes:
        name: what `get_dataset` accepts.
        description: one line for `vitbench list`.
        needs_data: True for real datasets, which read `data_dir`.
        example: a hub name that holds it, for the "needs data" message ("" if none).
        layout: what --data-dir should hold, for the same message.
    """

    name: str
    description: str
    needs_data: bool
    example: str = ""
    layout: str = ("DIR/train/<class>/... and DIR/val/<class>/..., or a datasets name / "
                   "save_to_disk directory")


_EMBEDDED: dict[str, Callable[[str], ImageDataset]] = {
    "digits": DigitsDataset,
    "shapes": ShapesDataset,
}
_ENTRIES = (
    DatasetEntry("digits", "scikit-learn 8x8 handwritten digits, 10 classes (embedded)", False),
    DatasetEntry("shapes", "procedural shapes with captions and object counts (embedded)", False),
    DatasetEntry("imagenet", "ImageNet-1k, 1000 classes", True, "ILSVRC/imagenet-1k"),
    DatasetEntry("cifar10", "CIFAR-10, 10 classes", True, "uoft-cs/cifar10"),
    DatasetEntry("cifar100", "CIFAR-100, 100 classes", True, "uoft-cs/cifar100"),
    DatasetEntry("coco", "COCO captions, Karpathy splits (5k test images, 5 captions each)",
                 True, layout="Karpathy's dataset_coco.json and DIR/val2014/*.jpg"),
    DatasetEntry("flickr30k", "Flickr30k captions, Karpathy splits (1k test images)", True,
                 layout="Karpathy's dataset_flickr30k.json and DIR/flickr30k-images/*.jpg"),
    DatasetEntry("vqav2", "VQAv2 questions with ten answers each, on COCO images", True,
                 layout="VQAv2's question and annotation JSON files and DIR/val2014/*.jpg"),
    DatasetEntry("gvt", "object counting / multi-class identification questions (GVT)", True,
                 layout='DIR/<split>.json: [{"image", "question", "answer", "type"}, ...]'),
    DatasetEntry("folder", "any ImageFolder tree DIR/<split>/<class>/...", True),
    DatasetEntry("hf", "any Hugging Face dataset (hub name or save_to_disk directory)", True),
    DatasetEntry("csv", "image-caption pairs from a CSV file", True),
    DatasetEntry("webdataset", "webdataset tar shards DIR/<split>/*.tar (KEY.jpg + KEY.txt)",
                 True),
)
_BY_NAME = {entry.name: entry for entry in _ENTRIES}
_SAVE_TO_DISK_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
_CSV_SUFFIXES = (".csv", ".tsv")
# "name" or "owner/name": no leading dot or slash, at most one slash, no file suffix like .csv.
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def list_datasets() -> tuple[DatasetEntry, ...]:
    """All registered dataset names, embedded ones first."""
    return _ENTRIES


def get_dataset(name: str, split: str, data_dir: str | os.PathLike[str] | None = None
                ) -> ImageDataset:
    """Open one split of a dataset.

    Args:
        name: a registered name (see `list_datasets`).
        split: "train", or an eval split ("val", "validation" and "test" stand in for each
            other when the dataset has only one of them).
        data_dir: where a real dataset's data is (see the module docstring); ignored by
            embedded datasets, which have their data built in.

    Returns:
        The split as an `ImageDataset`.

    Raises:
        UnknownNameError: `name` is not registered.
        VitbenchError: a real dataset without `data_dir`, or data that cannot be read.
    """
    if name not in _BY_NAME:
        raise UnknownNameError("dataset", name, _BY_NAME)
    if name in _EMBEDDED:
        return _EMBEDDED[name](split)
    if data_dir is None or str(data_dir) == "":
        entry = _BY_NAME[name]
        raise VitbenchError(f"dataset {name!r} needs data: pass --data-dir DIR with "
                            f"{entry.layout}" + (f" (e.g. {entry.example})" if entry.example
                                                 else ""))
    if name in ("vqav2", "gvt"):
        from vitbench.data.qa import QuestionsDataset

        return QuestionsDataset(data_dir, split, name=name)
    return _open_real(name, split, data_dir)


def _open_real(name: str, split: str, data_dir: str | os.PathLike[str]) -> ImageDataset:
    path = Path(data_dir).expanduser()
    if karpathy_file(path) is not None:
        return KarpathyCaptionsDataset(path, split, name=name)
    if path.is_dir():
        if is_shard_dir(path):
            return ShardDataset(path, split, name=name)
        if any((path / marker).is_file() for marker in _SAVE_TO_DISK_MARKERS):
            return HFImageDataset(path, split, name=name)
        return ImageFolderDataset(path, split, name=name)
    if path.is_file():
        if path.suffix.lower() in _CSV_SUFFIXES:
            return CsvPairsDataset(path, split, name=name)
        raise VitbenchError(f"data {path} is a file but not a .csv/.tsv; pass a directory, "
                            "a CSV of image-caption pairs or a datasets name")
    text = str(data_dir)
    if _HUB_NAME.fullmatch(text) and not text.lower().endswith(_CSV_SUFFIXES):
        return HFImageDataset(text, split, name=name)
    raise VitbenchError(f"data {text} does not exist; pass an existing directory, a .csv "
                        "file or a Hugging Face datasets name")
