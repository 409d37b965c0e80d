"""Eval preprocessing built from an encoder's spec, equal to what its backend does.

timm: resize the short side to floor(size / crop_pct), centre crop; open_clip: the same with
crop_pct = 1; SigLIP-style processors: squash both sides to size. Then to tensor, normalise.
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
    else:
        raise ValueError(f"unknown resize_mode {spec.resize_mode!r} in the spec of {spec.name}")
    return T.Compose([T.Lambda(_rgb), *resize, T.ToTensor(), T.Normalize(spec.mean, spec.std)])


def _rgb(image):
    """User images may be L, RGBA, ...; datasets already decode to RGB (vitbench.data.decode)."""
    return image if image.mode == "RGB" else image.convert("RGB")
