"""BLIP's dataset bootstrapping (arXiv:2201.12086, sec. 3.3) on a real pair set, as a CSV.

A finished `blip` run captions every image of an image-caption dataset and filters the web
captions and its own synthetic ones with its ITM head (`objectives.blip.capfilt`); the kept
pairs are written as a CSV of (image path, caption) rows, so that the second round is an
ordinary pretraining run: `vitbench pretrain --objective blip --data csv --data-dir OUT`.
In BLIP, the captioner and the filter are first finetuned on a small human-annotated set
(COCO); here that is the run given, e.g. one trained on the clean part of the data.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vitbench.data import ImageDataset
from vitbench.errors import VitbenchError
from vitbench.io import atomic_write

_IMAGES_PER_CHUNK = 1024  # images decoded and held as pixels at once


@dataclass(frozen=True)
class Bootstrapped:
    """What `capfilt_to_csv` wrote: counts of the pairs seen and kept."""

    path: Path
    web: int  # web (image, caption) pairs read
    web_kept: int
    synthetic: int  # synthetic captions written by the captioner, one per image
    synthetic_kept: int


def capfilt_to_csv(run: str | os.PathLike, dataset: ImageDataset, out: str | os.PathLike,
                   threshold: float = 0.5, batch_size: int = 256,
                   device: str = "cpu") -> Bootstrapped:
    """Caption and filter `dataset` with the `blip` run `run`; write the kept pairs to `out`.

    Args:
        run: a finished `vitbench pretrain --objective blip` run directory.
        dataset: image-caption pairs whose images are files (`CsvPairsDataset`): the output
            names them by path.
        out: the CSV to write (columns image, caption; absolute image paths), atomically.
        threshold: keep a pair when the ITM head's match probability is above it (BLIP: 0.5,
            i.e. the filter predicts "matched").
        batch_size: images (and pairs) per forward pass.
        device: where the run's model computes.

    Raises:
        VitbenchError: a threshold outside [0, 1), not a blip run, a dataset without
            captions or image files, or no pair kept (nothing to retrain on).
    """
    from vitbench import load
    from vitbench.pretrain.objectives.blip import Blip, capfilt, caption_vocabulary
    from vitbench.pretrain.trainer import load_objective

    if not 0 <= threshold < 1:
        raise VitbenchError(f"threshold must be in [0, 1), got {threshold}")
    objective = load_objective(run, device)
    if not isinstance(objective, Blip):
        raise VitbenchError(f"capfilt needs a blip run; {run} was trained with "
                            f"{type(objective).name}")
    paths = getattr(dataset, "paths", None)
    if not dataset.captions or paths is None:
        raise VitbenchError(f"capfilt needs image-caption pairs stored as image files (e.g. "
                            f"--data csv); {dataset.name} has "
                            f"{'no image files' if dataset.captions else 'no captions'}")
    transform = load(str(run)).transform
    words = caption_vocabulary((c for options in dataset.captions for c in options),
                               objective.params.vocab_size)
    rows: list[tuple[str, str]] = []
    web = web_kept = synthetic_kept = 0
    for start in range(0, len(dataset), _IMAGES_PER_CHUNK):
        images = range(start, min(start + _IMAGES_PER_CHUNK, len(dataset)))
        pixels = torch.stack([transform(dataset.image(i)) for i in images]).to(device)
        pairs = [(row, c) for row, i in enumerate(images) for c in dataset.captions[i]]
        found = capfilt(objective, pixels, pairs, words, threshold, batch_size)
        rows += [(str(Path(paths[images[row]]).resolve()), c) for row, c in found.pairs]
        web, web_kept = web + len(pairs), web_kept + int(found.web_kept.sum())
        synthetic_kept += int(found.synthetic_kept.sum())
    if not rows:
        raise VitbenchError(f"capfilt kept no pair at threshold {threshold}; the filter's "
                            "match probabilities are below it (lower --threshold, or train "
                            "the run longer)")
    write_pairs_csv(Path(out), rows)
    return Bootstrapped(Path(out), web, web_kept, len(dataset), synthetic_kept)


def write_pairs_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """(image path, caption) rows as the CSV `CsvPairsDataset` reads, written atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("image", "caption"))
            writer.writerows(rows)

    atomic_write(path, write)
