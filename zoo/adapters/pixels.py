"""The raw-pixel baseline: what any learned encoder has to beat.

pooled = the normalised image flattened; tokens = non-overlapping pixel patches flattened
(the visual-tokenizer protocol's raw-pixel control). Nothing is learned, so weights are moot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vitbench.contract import Encoder, ImageFeatures, LoadedWeights
from vitbench.errors import VitbenchError
from vitbench.zoo.transforms import make_transform

NO_WEIGHTS = LoadedWeights("none", "none", "none")  # random, pretrained: all the same


@dataclass(kw_only=True, repr=False)
class PixelsEncoder(Encoder):
    patch_size: int

    def modules(self) -> list[torch.nn.Module]:
        return []

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        self._no_layers(layers)
        b, c, _, _ = pixels.shape
        p = self.patch_size
        patches = torch.nn.functional.unfold(pixels, kernel_size=p, stride=p)  # (B, C*p*p, N)
        return ImageFeatures(pooled=pixels.reshape(b, -1), tokens=patches.transpose(1, 2))


def build(entry, request, resolution: int) -> PixelsEncoder:
    spec = entry.spec
    if request.kind == "file":
        raise VitbenchError(f"{spec.name} has no weights to load")
    if resolution % spec.patch_size:
        raise VitbenchError(f"{spec.name}: resolution {resolution} is not a multiple of its "
                            f"patch size {spec.patch_size}")
    return PixelsEncoder(spec=spec, loaded=NO_WEIGHTS, resolution=resolution,
                         transform=make_transform(spec, resolution), patch_size=spec.patch_size)
