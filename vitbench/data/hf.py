"""Image datasets from Hugging Face `datasets`: a hub name or a `save_to_disk` directory."""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitbench.data.base import ImageDataset, resolve_split
from vitbench.data.decode import decode_image
from vitbench.errors import BadImageError, VitbenchError

PREFERRED_IMAGE_COLUMNS = ("image", "img")
PREFERRED_LABEL_COLUMNS = ("label", "labels", "fine_label")  # cifar100: fine over coarse
CAPTION_COLUMNS = ("caption", "captions", "text", "sentences")
HUB_PROBE_TIMEOUT_S = 3.0

_SUPPLY = ("supply it locally: pass --data-dir with a save_to_disk directory or an ImageFolder "
           "tree DIR/<split>/<class>/...")


class HFImageDataset(ImageDataset):
    """One split of a Hugging Face dataset, images decoded by `decode_image`.

    The image column is the first `Image` feature and the label column the first `ClassLabel`
    feature (preferring the names in `PREFERRED_*_COLUMNS`); class names come from the
    `ClassLabel`. An overriding label column may also hold ints (classes "0".."max") or
    strings (classes sorted). A caption column (string or list of strings) is picked up when
    named as in `CAPTION_COLUMNS`.

    Args:
        source: a hub dataset name ("uoft-cs/cifar10") or a `save_to_disk` directory holding a
            DatasetDict (splits) or a single Dataset (one split).
        split: split to read; "val", "validation" and "test" stand in for each other.
        name: dataset name for messages and the fingerprint; defaults to `source`.
        image_column, label_column, caption_column: override the detected columns.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        split: str,
        name: str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        caption_column: str | None = None,
    ):
        import datasets  # a slow import; only runs that use such data pay for it

        name = name or str(source)
        table, split = _load_split(source, split, name)
        features = table.features
        image_column = image_column or _find_column(features, datasets.Image,
                                                    PREFERRED_IMAGE_COLUMNS)
        if image_column not in features:
            columns = ", ".join(features)
            raise VitbenchError(f"dataset {name!r} has no image column (columns: {columns}); "
                                "store images as a datasets.Image feature")
        label_column = label_column or _find_column(features, datasets.ClassLabel,
                                                    PREFERRED_LABEL_COLUMNS)
        caption_column = caption_column or next(
            (c for c in CAPTION_COLUMNS if c in features and _is_text(features[c])), None)
        classes, labels = _labels(table, label_column)
        # Undecoded images ({"bytes", "path"}), so that decode_image applies the same
        # bad-image rules to every source.
        self._images = table.select_columns([image_column]).cast_column(
            image_column, datasets.Image(decode=False))
        self._image_column = image_column
        super().__init__(
            name=name,
            split=split,
            classes=classes,
            labels=labels,
            fingerprint=f"{name}-{split}-{table._fingerprint}",
            captions=_captions(table, caption_column) if caption_column else None,
        )

    def image(self, index: int) -> Image.Image:
        stored = self._images[index][self._image_column] or {}
        data = stored.get("bytes") or stored.get("path")
        if not data:
            raise BadImageError(self.describe(index), "the row has no image data")
        return decode_image(data, source=self.describe(index))


def _load_split(source: str | os.PathLike[str], split: str, name: str) -> tuple[Any, str]:
    """The `datasets.Dataset` of `split`, and the split's actual name."""
    import datasets

    local = Path(source).expanduser()
    loaded = _load_local(local) if local.is_dir() else _load_hub(str(source))
    if isinstance(loaded, datasets.DatasetDict):
        split = resolve_split(name, split, loaded)
        return loaded[split], split
    # A single Dataset is one split. One that does not know its split is served as "train"
    # only: serving it for every split would let a probe train and test on the same images.
    split = resolve_split(name, split, [str(loaded.split or "train")],
                          hint="save a DatasetDict with train and test/val splits to evaluate")
    return loaded, split


def _load_local(directory: Path) -> Any:
    import datasets

    try:
        return datasets.load_from_disk(str(directory))
    except FileNotFoundError:
        raise VitbenchError(f"{directory} is not a datasets save_to_disk directory (no "
                            "dataset_dict.json or dataset_info.json)") from None


def _load_hub(hub_name: str) -> Any:
    import datasets

    with _offline_if_hub_unreachable() as forced_offline:
        try:
            return datasets.load_dataset(hub_name)
        except Exception as error:
            # datasets signals "not cached / not on the hub / no network" with many unrelated
            # types (ConnectionError, FileNotFoundError, DatasetNotFoundError, ValueError...).
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            if forced_offline:
                reason = "the hub is unreachable and the dataset is not in the local cache"
            raise VitbenchError(f"cannot load dataset {hub_name!r} from the Hugging Face hub "
                                f"or its cache ({reason}); {_SUPPLY}") from None


@contextlib.contextmanager
def _offline_if_hub_unreachable() -> Iterator[bool]:
    """Run in datasets' offline mode (cache only) when the hub cannot be reached.

    Without this, a machine without network spends ~25 s in retries before failing or
    falling back to the cache. `datasets` and `huggingface_hub` read their offline flags from
    module constants on every request, so we set those for the duration of the load.

    Yields:
        Whether it switched offline mode on.
    """
    import datasets.config
    import huggingface_hub.constants as hub_constants

    if datasets.config.HF_HUB_OFFLINE or _hub_reachable(hub_constants.ENDPOINT):
        yield False
        return
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _hub_reachable(endpoint: str) -> bool:
    url = urllib.parse.urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _find_column(features: Any, feature_type: type, preferred: Sequence[str]) -> str | None:
    matching = [c for c, feature in features.items() if isinstance(feature, feature_type)]
    return next((c for c in preferred if c in matching), matching[0] if matching else None)


def _labels(table: Any, column: str | None) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names and (N,) int64 labels; no classes and all -1 without a label column."""
    import datasets

    if column is None:
        return (), np.full(len(table), -1, dtype=np.int64)
    if column not in table.features:
        raise VitbenchError(f"dataset has no label column {column!r} "
                            f"(columns: {', '.join(table.features)})")
    values = np.asarray(table.with_format("numpy", columns=[column])[:][column])
    feature = table.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return tuple(feature.names), values.astype(np.int64)
    if np.issubdtype(values.dtype, np.integer):
        return tuple(str(c) for c in range(values.max() + 1)), values.astype(np.int64)
    names, labels = np.unique(values.astype(str), return_inverse=True)
    return tuple(names), labels.astype(np.int64)


def _is_text(feature: Any) -> bool:
    import datasets

    inner = getattr(feature, "feature", feature)  # List/Sequence of strings, or a string
    return isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string")


def _captions(table: Any, column: str) -> list[list[str]]:
    return [[value] if isinstance(value, str) else list(value or []) for value in table[column]]
