"""Training batches: a pure function of (seed, step, rank), so runs resume and shard exactly.

The global batch of step s is a slice of a per-epoch permutation seeded by (seed, epoch); each
image's augmentation draws from a generator seeded by (seed, step, position in the global
batch). Rank r of W takes rows [r*B/W, (r+1)*B/W) of the global batch, so a 2-process run sees
exactly the images and crops of the 1-process run, and a resumed run those of the
uninterrupted one. Batches are assembled in the training process (small embedded sets are
decoded once and kept as uint8 tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import functional as TF

from vitbench.data import ImageDataset
from vitbench.errors import VitbenchError

CACHE_ALL = 50_000  # decode every image once if the split is at most this large


@dataclass(frozen=True)
class Augment:
    """RandomResizedCrop (scale, ratio) + optional horizontal flip, then normalise.

    Scale 0.35-1 rather than ImageNet's 0.08-1: at 32-64 px a small crop leaves nothing
    recognisable.
    """

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __call__(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """uint8 (3, H, W) -> normalised float (3, res, res), all randomness from `gen`."""
        _, height, width = image.shape
        u = torch.rand(4, generator=gen).tolist()
        area = height * width * (self.scale[0] + u[0] * (self.scale[1] - self.scale[0]))
        log_r = np.log(self.ratio[0]) + u[1] * (np.log(self.ratio[1]) - np.log(self.ratio[0]))
        aspect = float(np.exp(log_r))
        w = min(width, max(1, round((area * aspect) ** 0.5)))
        h = min(height, max(1, round((area / aspect) ** 0.5)))
        top, left = int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1))
        size = [self.resolution, self.resolution]
        out = TF.resized_crop(image.float() / 255, top, left, h, w, size, antialias=True)
        if self.flip and torch.rand(1, generator=gen).item() < 0.5:
            out = out.flip(-1)
        return TF.normalize(out, self.mean, self.std)


class TrainBatches:
    """`batch(step, rank, world)` -> {"image", "label", "caption"} for that rank's rows."""

    def __init__(self, dataset: ImageDataset, augment: Augment, batch_size: int,
                 seed: int = 0, needs: tuple[str, ...] = ()):
        if len(dataset) < batch_size:
            raise VitbenchError(f"{dataset.name}/{dataset.split} has {len(dataset)} images, "
                                f"fewer than the batch size {batch_size}")
        if "caption" in needs and not dataset.captions:
            raise VitbenchError(f"{dataset.name} has no captions; image-text objectives need "
                                "pairs (e.g. --data shapes or a CSV of image,caption)")
        if "label" in needs and (dataset.labels < 0).any():
            raise VitbenchError(f"{dataset.name}/{dataset.split} has unlabelled images; "
                                "supervised pretraining needs labels")
        self.dataset, self.augment, self.batch_size, self.seed = dataset, augment, batch_size, seed
        self.steps_per_epoch = len(dataset) // batch_size  # the ragged tail is dropped
        self._decoded: dict[int, torch.Tensor] = {}
        self._orders: dict[int, np.ndarray] = {}

    def indices(self, step: int) -> np.ndarray:
        """The dataset indices of the global batch of `step`."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(
                len(self.dataset))}
        start = offset * self.batch_size
        return self._orders[epoch][start:start + self.batch_size]

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict:
        if self.batch_size % world:
            raise VitbenchError(f"batch size {self.batch_size} does not split over {world} "
                                "processes")
        local = self.batch_size // world
        rows = range(rank * local, (rank + 1) * local)
        indices = self.indices(step)[rows.start:rows.stop]
        images, captions = [], []
        for position, index in zip(rows, indices, strict=True):
            gen = torch.Generator().manual_seed(hash((self.seed, step, position)) % 2**62)
            images.append(self.augment(self._pixels(int(index)), gen))
            if self.dataset.captions:
                options = self.dataset.captions[index]
                captions.append(options[int(torch.randint(len(options), (1,), generator=gen))])
        return {"image": torch.stack(images),
                "label": torch.as_tensor(self.dataset.labels[indices], dtype=torch.long),
                "caption": captions}

    def _pixels(self, index: int) -> torch.Tensor:
        if index in self._decoded:
            return self._decoded[index]
        pixels = TF.pil_to_tensor(self.dataset.image(index).convert("RGB"))
        if len(self.dataset) <= CACHE_ALL:
            self._decoded[index] = pixels
        return pixels


def split_micro(batch: dict, parts: int) -> list[dict]:
    """Split a batch into `parts` equal micro-batches (gradient accumulation)."""
    size = len(batch["image"])
    if size % parts:
        raise VitbenchError(f"per-process batch {size} does not split into {parts} "
                            "accumulation steps")
    step = size // parts
    return [{key: value[i:i + step] for key, value in batch.items()}
            for i in range(0, size, step)]
