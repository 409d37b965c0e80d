"""COCO and Flickr30k captions in Karpathy's splits, the retrieval benchmarks' standard form.

Karpathy's `dataset_coco.json` / `dataset_flickr30k.json` list every image with its split
("train", "restval", "val", "test") and its five sentences. The 5k COCO test split and the
1k Flickr30k test split are what CLIP, OpenCLIP, EVA-CLIP and SigLIP report Recall@K on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vitbench.data.base import resolve_split
from vitbench.data.folders import _digest, _FileDataset
from vitbench.errors import VitbenchError

KARPATHY_FILES = ("dataset_coco.json", "dataset_flickr30k.json")
# Folders Flickr30k images usually live in (its JSON has no `filepath`).
_IMAGE_FOLDERS = ("", "flickr30k-images", "images")
_LAYOUT = ("expected Karpathy's dataset_coco.json / dataset_flickr30k.json next to the images "
           "(COCO: DIR/val2014/..., Flickr30k: DIR/flickr30k-images/...)")


def karpathy_file(path: Path) -> Path | None:
    """The Karpathy JSON `path` is, or holds; None if neither."""
    if path.is_file() and path.suffix == ".json":
        return path
    return next((path / name for name in KARPATHY_FILES if (path / name).is_file()), None)


class KarpathyCaptionsDataset(_FileDataset):
    """One split of a Karpathy caption file; "train" also takes "restval" (the usual 113k).

    Args:
        path: the JSON file, or the directory that holds it and the images.
        split: "train", "val" or "test" ("validation" stands in for "val").
        name: dataset name for messages and the fingerprint.
    """

    def __init__(self, path: str | os.PathLike[str], split: str, name: str = "coco"):
        source = karpathy_file(Path(path).expanduser())
        if source is None:
            raise VitbenchError(f"no Karpathy caption file in {path}; {_LAYOUT}")
        try:
            images = json.loads(source.read_text(encoding="utf-8"))["images"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise VitbenchError(f"cannot read {source}: {error}; {_LAYOUT}") from None
        split = resolve_split(name, split, {image.get("split") for image in images}
                              | {"train"}, hint=_LAYOUT)
        wanted = {"train", "restval"} if split == "train" else {split}
        chosen = [image for image in images if image.get("split") in wanted]
        if not chosen:
            raise VitbenchError(f"{source} has no images in split {split!r}")
        self.paths = [_image_path(source.parent, image) for image in chosen]
        captions = [[s["raw"].strip() for s in image.get("sentences", ())] for image in chosen]
        digest = _digest(["karpathy"], [source, *self.paths], source.parent)
        super().__init__(name=name, split=split, classes=(),
                         labels=np.full(len(chosen), -1, dtype=np.int64),
                         fingerprint=f"{name}-{split}-{digest}", captions=captions)


def _image_path(root: Path, image: dict) -> Path:
    if image.get("filepath"):
        return root / image["filepath"] / image["filename"]
    candidates = [root / folder / image["filename"] for folder in _IMAGE_FOLDERS]
    return next((c for c in candidates if c.exists()), candidates[0])
