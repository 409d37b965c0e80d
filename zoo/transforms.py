"""Eval preprocessing built from an encoder's spec, equal to what its backend does.

timm: resize the short side to floor(size / crop_pct), centre crop; open_clip: the same with
crop_pct = 1; SigLIP-style processors: squash both sides to size; NaViT-style encoders
("patches"): keep the aspect ratio, no crop, as timm's NaFlex eval transform. Then to tensor,
normalise.
"""

from __future__ import annotations

import math

from torchvision import transforms as T

from vitbench.contract import EncoderSpec, Transform


def make_transform(spec: EncoderSpec, resolution: int) -> Transform:
    interpolation = T.InterpolationMode(spec.interpolation)
    if spec.resize_mode == "squash":
        resize = [T.Resize((resolution, resolution), interpolation=interpolation)]
    elif spec.resize_mode == "shortest":
        resize = [T.Resize(math.floor(resolution / spec.crop_pct), interpolation=interpolation),
                  T.CenterCrop(resolution)]
    elif spec.resize_mode == "patches":  # the budget of a square image at this resolution
        resize = [ResizeToPatches(spec.patch_size, (resolution // spec.patch_size) ** 2,
                                  interpolation)]
    else:
        raise ValueError(f"unknown resize_mode {spec.resize_mode!r} in the spec of {spec.name}")
    return T.Compose([T.Lambda(_rgb), *resize, T.ToTensor(), T.Normalize(spec.mean, spec.std)])


class ResizeToPatches:
    """Resize keeping the aspect ratio to the largest size whose patch grid fits a budget.

    Both sides become multiples of the patch size (rounded up, at least one patch), so an
    image of any shape turns into at most `max_patches` whole patches and nothing is cropped.
    """

    def __init__(self, patch: int, max_patches: int, interpolation: T.InterpolationMode):
        self.patch, self.max_patches, self.interpolation = patch, max_patches, interpolation

    def __call__(self, image):
        rows, cols = patch_grid(image.height, image.width, self.max_patches)
        size = [rows * self.patch, cols * self.patch]
        return T.functional.resize(image, size, interpolation=self.interpolation, antialias=True)

    def __repr__(self) -> str:  # part of the feature-cache key
        return (f"ResizeToPatches(patch={self.patch}, max_patches={self.max_patches}, "
                f"interpolation={self.interpolation.value})")


def patch_grid(height: int, width: int, max_patches: int) -> tuple[int, int]:
    """(rows, cols) of patches for an image scaled by the largest r with
    ceil(height * r / p) * ceil(width * r / p) <= max_patches.

    The grid only changes where one side scales to a whole number of patches, so the largest
    feasible r is one of those points: r = k * p / height (rows = k) or k * p / width
    (cols = k). Integer arithmetic, no search; the grid grows with r, so the feasible point
    with the most patches is the one with the largest r.
    """
    best = (1, 1)
    for k in range(1, max_patches + 1):
        for grid in ((k, max(1, -(-width * k // height))), (max(1, -(-height * k // width)), k)):
            if grid[0] * grid[1] <= max_patches and grid[0] * grid[1] > best[0] * best[1]:
                best = grid
    return best


def _rgb(image):
    """User images may be L, RGBA, ...; datasets already decode to RGB (vitbench.data.decode)."""
    return image if image.mode == "RGB" else image.convert("RGB")
