"""Webdataset shards: image-text (and label) samples packed in plain tar files.

The layout is webdataset's: samples are consecutive members sharing a key, `KEY.jpg` (or
.jpeg/.png/.webp) with `KEY.txt` (or .caption; a caption per line) and optionally `KEY.cls`
(an integer label). A split is `DIR/<split>/*.tar` or, when DIR holds the tars directly, all of
them as "train". The shards are indexed once (member offsets only; tar headers are small) and
images are read by seeking, so the trainer's seeded random access works on sets far larger
than memory, and a shard is one sequential read for the page cache. No webdataset package is
needed: a tar file is all the format is.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vitbench.data.base import ImageDataset, resolve_split
from vitbench.data.decode import decode_image
from vitbench.errors import VitbenchError

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
CAPTION_SUFFIXES = ("txt", "caption")


@dataclass(frozen=True)
class _Member:
    shard: int
    offset: int  # of the member's data in the tar file
    size: int


def is_shard_dir(path: Path) -> bool:
    """True for a directory of .tar shards, or of split folders holding .tar shards."""
    return path.is_dir() and (any(path.glob("*.tar")) or any(path.glob("*/*.tar")))


class ShardDataset(ImageDataset):
    """One split of a webdataset shard set, with random access to every sample."""

    def __init__(self, root: str | os.PathLike[str], split: str, name: str = "webdataset"):
        root = Path(root).expanduser()
        splits = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("*.tar"))}
        if not splits and any(root.glob("*.tar")):
            splits = {"train": root}
        split = resolve_split(name, split, splits,
                              hint=f"expected {root}/<split>/*.tar or {root}/*.tar")
        self.shards = sorted(splits[split].glob("*.tar"))
        self._images: list[_Member] = []
        captions: list[list[str]] = []
        labels: list[int] = []
        for number, shard in enumerate(self.shards):
            for sample in _samples(shard, number):
                self._images.append(sample[0])
                captions.append(sample[1])
                labels.append(sample[2])
        if not self._images:
            raise VitbenchError(f"{splits[split]}: no samples with an image "
                                f"({'/'.join(IMAGE_SUFFIXES)}) in {len(self.shards)} shard(s)")
        has_labels = any(label >= 0 for label in labels)
        classes = tuple(str(c) for c in range(max(labels) + 1)) if has_labels else ()
        digest = hashlib.sha256()
        for shard in self.shards:
            stat = shard.stat()
            digest.update(f"{shard.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        super().__init__(
            name=name, split=split, classes=classes,
            labels=np.asarray(labels, dtype=np.int64),
            fingerprint=f"shards-{digest.hexdigest()[:16]}",
            captions=captions if any(captions) else None,
        )

    def image(self, index: int) -> Image.Image:
        member = self._images[index]
        with open(self.shards[member.shard], "rb") as f:
            f.seek(member.offset)
            data = f.read(member.size)
        return decode_image(data, self.describe(index))

    def describe(self, index: int) -> str:
        member = self._images[index]
        return f"{self.shards[member.shard]}@{member.offset}"


def _samples(shard: Path, number: int):
    """(image member, captions, label) per key of one shard, in the shard's order."""
    by_key: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(shard, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                base = info.name.rsplit("/", 1)[-1]
                key, dot, suffix = base.partition(".")
                if dot:
                    folder = info.name[: len(info.name) - len(base)]
                    by_key.setdefault(folder + key, {})[suffix.lower()] = info
            for parts in by_key.values():
                image = next((parts[s] for s in IMAGE_SUFFIXES if s in parts), None)
                if image is None:
                    continue
                captions = []
                text = next((parts[s] for s in CAPTION_SUFFIXES if s in parts), None)
                if text is not None:
                    raw = tar.extractfile(text).read().decode("utf-8", errors="replace")
                    captions = [line.strip() for line in raw.splitlines() if line.strip()]
                label = -1
                if "cls" in parts:
                    label = int(tar.extractfile(parts["cls"]).read().decode().strip())
                yield _Member(number, image.offset_data, image.size), captions, label
    except (tarfile.TarError, ValueError) as exc:
        raise VitbenchError(f"{shard} is not a readable webdataset shard ({exc})") from None
