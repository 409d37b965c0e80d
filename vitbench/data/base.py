"""The one dataset type every protocol reads: indexed images with labels and (maybe) captions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vitbench.errors import VitbenchError


@dataclass
class ImageDataset(ABC):
    """A split of an image dataset with random access.

    Attributes:
        name: dataset name as the task registry knows it (e.g. "digits", "imagenet").
        split: split name ("train", "test", "val", ...).
        classes: class names, index = label.
        labels: (N,) int64 class labels; -1 where a split has none.
        fingerprint: identity of the content (generator version + seed for embedded sets;
            file list with sizes and mtimes, or a datasets fingerprint, for real data). Part of
            the feature-cache key, so changed data is never served stale features.
        captions: one list of captions per image, or None for datasets without text.
    """

    name: str
    split: str
    classes: tuple[str, ...]
    labels: np.ndarray
    fingerprint: str
    captions: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def image(self, index: int) -> Image.Image:
        """Decode image `index` as an RGB PIL image; raise `BadImageError` if it cannot be."""

    def describe(self, index: int) -> str:
        """Where image `index` comes from (a path for file-backed data), for error messages."""
        return f"{self.name}/{self.split}[{index}]"


# An eval split goes by different names in different datasets; any of them stands for the others.
EVAL_SPLITS = ("val", "validation", "test")


def resolve_split(dataset: str, requested: str, available: Iterable[str], hint: str = "") -> str:
    """Map a requested split onto one the dataset has.

    An exact match wins; otherwise "val", "validation" and "test" stand in for each other
    (first present in that order), so an eval that asks for "test" runs on ImageNet's "val".

    Args:
        dataset: dataset name, for the error message.
        requested: the split asked for.
        available: the splits the dataset has.
        hint: appended to the error message: how to supply the missing split.

    Returns:
        The split name to load.

    Raises:
        VitbenchError: no split matches; the message lists the available ones.
    """
    available = list(available)
    if requested in available:
        return requested
    if requested in EVAL_SPLITS:
        for alias in EVAL_SPLITS:
            if alias in available:
                return alias
    have = ", ".join(sorted(available)) or "none"
    raise VitbenchError(f"dataset {dataset!r} has no {requested!r} split (it has: {have})"
                        + (f"; {hint}" if hint else ""))
