"""Datasets read from plain files: ImageFolder trees and CSV files of image-caption pairs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vitbench.data.base import ImageDataset, resolve_split
from vitbench.data.decode import decode_image
from vitbench.errors import VitbenchError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
IMAGE_COLUMNS = ("image", "filepath", "image_path", "file_name")
CAPTION_COLUMNS = ("caption", "text", "title")
SPLIT_COLUMN = "split"

_FOLDER_LAYOUT = "expected DIR/<split>/<class>/<image files>"


class _FileDataset(ImageDataset):
    """An ImageDataset whose image `i` is the file `paths[i]`."""

    paths: list[Path]

    def image(self, index: int) -> Image.Image:
        return decode_image(self.paths[index])

    def describe(self, index: int) -> str:
        return str(self.paths[index])


class ImageFolderDataset(_FileDataset):
    """A split of an ImageFolder tree, `root/<split>/<class>/**/<image>`.

    Classes are the sorted class folder names of all splits together (torchvision sorts
    each split's folders alone), so a class missing from one split cannot shift the label
    indices of the others. Hidden files and folders are skipped (e.g. macOS "._x.jpg").

    Args:
        root: the tree's root directory.
        split: split to read; "val", "validation" and "test" stand in for each other.
        name: dataset name for messages and the fingerprint.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, name: str = "folder"):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise VitbenchError(f"data dir {root} is not a directory; {_FOLDER_LAYOUT}")
        split_dirs = {d.name: d for d in _subdirs(root)}
        split = resolve_split(name, split, split_dirs, hint=f"{_FOLDER_LAYOUT} under {root}")
        classes = sorted({d.name for split_dir in split_dirs.values() for d in _subdirs(split_dir)})
        self.paths, labels = [], []
        for label, class_name in enumerate(classes):
            files = _image_files(split_dirs[split] / class_name)
            self.paths += files
            labels += [label] * len(files)
        if not self.paths:
            raise VitbenchError(f"no image files in {split_dirs[split]} ({_FOLDER_LAYOUT}, "
                                f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
        super().__init__(
            name=name,
            split=split,
            classes=tuple(classes),
            labels=np.array(labels, dtype=np.int64),
            fingerprint=f"{name}-{split}-{_digest(classes, self.paths, root)}",
        )


class CsvPairsDataset(_FileDataset):
    """Image-caption pairs from a CSV (or .tsv) file; rows sharing an image are its captions.

    Relative image paths are resolved against the CSV's directory. Rows with an empty caption
    or image are ignored. If the file has a "split" column, only the rows of the requested split are
    read; otherwise the whole file is the split. There are no classes: labels are all -1.

    Args:
        csv_path: the CSV file.
        split: split name (matched against the "split" column when there is one).
        image_column: column of image paths; default: the first of `IMAGE_COLUMNS` present.
        caption_column: column of captions; default: the first of `CAPTION_COLUMNS` present.
        name: dataset name for messages and the fingerprint.
    """

    def __init__(
        self,
        csv_path: str | os.PathLike[str],
        split: str,
        image_column: str | None = None,
        caption_column: str | None = None,
        name: str = "csv",
    ):
        csv_path = Path(csv_path).expanduser()
        table = _read_table(csv_path)
        image_column = _pick_column(table, image_column, IMAGE_COLUMNS, "image", csv_path)
        caption_column = _pick_column(table, caption_column, CAPTION_COLUMNS, "caption", csv_path)
        if SPLIT_COLUMN in table.columns:
            split = resolve_split(name, split, table[SPLIT_COLUMN].unique(),
                                  hint=f"add rows with that value in {csv_path}'s split column")
            table = table[table[SPLIT_COLUMN] == split]
        captions: dict[Path, list[str]] = {}  # keeps first-appearance order
        for image, caption in zip(table[image_column], table[caption_column], strict=True):
            if image.strip() and caption.strip():
                captions.setdefault(_resolve(image, csv_path.parent), []).append(caption)
        if not captions:
            raise VitbenchError(f"{csv_path} has no rows with an image and a caption "
                                f"(columns {image_column!r}, {caption_column!r})")
        self.paths = list(captions)
        if not any(path.exists() for path in self.paths):
            raise VitbenchError(f"none of the images in {csv_path} exist (e.g. {self.paths[0]}); "
                                "give paths relative to the CSV's directory, or absolute paths")
        files = [csv_path, *self.paths]
        digest = _digest([image_column, caption_column], files, csv_path.parent)
        super().__init__(
            name=name,
            split=split,
            classes=(),
            labels=np.full(len(self.paths), -1, dtype=np.int64),
            fingerprint=f"{name}-{split}-{digest}",
            captions=list(captions.values()),
        )


def _subdirs(directory: Path) -> list[Path]:
    return sorted(d for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    files = []
    for folder, subfolders, names in os.walk(directory, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        files += [Path(folder, n) for n in sorted(names)
                  if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTENSIONS]
    return files


def _digest(header: Iterable[str], paths: Sequence[Path], root: Path) -> str:
    """Hash of `header` and each file's path relative to `root`, size and mtime.

    Any added, removed, renamed, resized or rewritten file changes it, and with it the
    feature-cache key. A missing file hashes as size -1 (reading it will raise later).
    """
    digest = hashlib.sha256("\n".join(header).encode())
    for path in paths:
        try:
            stat = path.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, 0
        relative = os.path.relpath(path, root)
        digest.update(f"\n{relative}\t{size}\t{mtime}".encode())
    return digest.hexdigest()[:16]


def _read_table(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise VitbenchError(f"CSV file {csv_path} does not exist; pass an existing .csv file")
    separator = "\t" if csv_path.suffix.lower() == ".tsv" else ","
    try:
        # Strings only, and no "NA"/"null" -> NaN guessing: captions are text as written.
        return pd.read_csv(csv_path, sep=separator, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())
        raise VitbenchError(f"cannot read CSV {csv_path}: {reason}") from None


def _pick_column(
    table: pd.DataFrame, chosen: str | None, defaults: Sequence[str], what: str, csv_path: Path
) -> str:
    candidates = [chosen] if chosen else list(defaults)
    for column in candidates:
        if column in table.columns:
            return column
    raise VitbenchError(f"{csv_path} has no {what} column (looked for {', '.join(candidates)}; "
                        f"it has: {', '.join(map(str, table.columns))}); rename one of its "
                        f"columns to {candidates[0]!r}")


def _resolve(image: str, base: Path) -> Path:
    path = Path(image).expanduser()
    return path if path.is_absolute() else base / path
