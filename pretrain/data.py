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
class View:
    """How one augmented view of an image is made (the multi-view objectives' recipe).

    size: output side as a fraction of the run's --resolution (DINO's local crops: 0.5).
    scale, ratio: RandomResizedCrop's area fraction and aspect range. Scale 0.35-1 by default
        rather than ImageNet's 0.08-1: at 32-64 px a small crop leaves nothing recognisable.
    jitter: colour jitter strength s (brightness/contrast/saturation 0.4 s, hue 0.1 s, applied
        with probability 0.8, as SimCLR/BYOL/DINO); grayscale, blur: probabilities.
    """

    size: float = 1.0
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: float = 0.0
    grayscale: float = 0.0
    blur: float = 0.0


@dataclass(frozen=True)
class Augment:
    """Crop + optional flip (+ the view's photometric changes), then normalise."""

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __call__(self, image: torch.Tensor, gen: torch.Generator,
                 view: View | None = None) -> torch.Tensor:
        """uint8 (3, H, W) -> normalised float (3, res, res), all randomness from `gen`."""
        view = view or View(scale=self.scale, ratio=self.ratio)
        _, height, width = image.shape
        u = torch.rand(4, generator=gen).tolist()
        area = height * width * (view.scale[0] + u[0] * (view.scale[1] - view.scale[0]))
        log_r = np.log(view.ratio[0]) + u[1] * (np.log(view.ratio[1]) - np.log(view.ratio[0]))
        aspect = float(np.exp(log_r))
        w = min(width, max(1, round((area * aspect) ** 0.5)))
        h = min(height, max(1, round((area / aspect) ** 0.5)))
        top, left = int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1))
        side = max(1, round(self.resolution * view.size))
        out = TF.resized_crop(image.float() / 255, top, left, h, w, [side, side], antialias=True)
        if self.flip and torch.rand(1, generator=gen).item() < 0.5:
            out = out.flip(-1)
        if view.jitter or view.grayscale or view.blur:
            out = _photometric(out, view, gen)
        return TF.normalize(out, self.mean, self.std)


def _photometric(image: torch.Tensor, view: View, gen: torch.Generator) -> torch.Tensor:
    """Colour jitter (random order of the four changes), grayscale and blur, as torchvision's
    ColorJitter/RandomGrayscale/GaussianBlur do, but drawing from `gen` (exact resume)."""
    u = torch.rand(8, generator=gen).tolist()
    if view.jitter and u[0] < 0.8:
        s = view.jitter
        changes = [(TF.adjust_brightness, 1 + 0.4 * s * (2 * u[1] - 1)),
                   (TF.adjust_contrast, 1 + 0.4 * s * (2 * u[2] - 1)),
                   (TF.adjust_saturation, 1 + 0.4 * s * (2 * u[3] - 1)),
                   (TF.adjust_hue, 0.1 * s * (2 * u[4] - 1))]
        for i in torch.randperm(4, generator=gen).tolist():
            change, factor = changes[i]
            image = change(image, factor)
    if u[5] < view.grayscale:
        image = TF.rgb_to_grayscale(image, num_output_channels=3)
    if u[6] < view.blur:
        sigma = 0.1 + 1.9 * u[7]
        image = TF.gaussian_blur(image, [3, 3], [sigma, sigma])
    return image.clamp(0, 1)


class TrainBatches:
    """`batch(step, rank, world)` -> {"image", "label", "caption"(, "views")} for that rank's
    rows; "views" (one tensor per `View`) only when the objective asks for views."""

    def __init__(self, dataset: ImageDataset, augment: Augment, batch_size: int,
                 seed: int = 0, needs: tuple[str, ...] = (), views: tuple[View, ...] = ()):
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
        self.views = views
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
        views: list[list[torch.Tensor]] = [[] for _ in self.views]
        for position, index in zip(rows, indices, strict=True):
            gen = torch.Generator().manual_seed(hash((self.seed, step, position)) % 2**62)
            pixels = self._pixels(int(index))
            images.append(self.augment(pixels, gen))
            for made, view in zip(views, self.views, strict=True):
                made.append(self.augment(pixels, gen, view))
            if self.dataset.captions:
                options = self.dataset.captions[index]
                captions.append(options[int(torch.randint(len(options), (1,), generator=gen))])
        batch = {"image": torch.stack(images),
                 "label": torch.as_tensor(self.dataset.labels[indices], dtype=torch.long),
                 "caption": captions}
        if self.views:  # a list, one (B, 3, r, r) tensor per view (sizes may differ)
            batch["views"] = [torch.stack(made) for made in views]
        return batch

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
    return [{key: [v[i:i + step] for v in value] if key == "views" else value[i:i + step]
             for key, value in batch.items()}
            for i in range(0, size, step)]
