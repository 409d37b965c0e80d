"""Variable-size batches for timm's NaFlex ViTs (NaViT-style "Patch n' Pack").

Dehghani et al., "Patch n' Pack: NaViT, a Vision Transformer for any Aspect Ratio and
Resolution", arXiv:2307.06304. Images keep their own size and aspect ratio; each becomes its own
number of patches. timm's NaFlexVit takes such a batch as padded patch sequences plus patch
coordinates (which row/column each patch came from, for the position embeddings) and a validity
mask; the mask keeps attention and pooling inside the real patches of each image, so an image
gives the same features alone as inside any mixed batch.

The timm adapter hands a list of (3, H_i, W_i) images here; `ImageFeatures.tokens` comes back
padded to the longest image, with `token_mask` marking the real tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vitbench.contract import ImageFeatures
from vitbench.errors import VitbenchError


def patchify(image: torch.Tensor, patch: int, channels_last: bool) -> torch.Tensor:
    """(3, H, W) -> (H/p * W/p, p*p*3) patches in row-major grid order.

    `channels_last` is the flat layout of one patch that the model's linear patch embedding
    was trained with: (p, p, C) when True, (C, p, p) when False.
    """
    c, h, w = image.shape
    grid = image.reshape(c, h // patch, patch, w // patch, patch)
    order = (1, 3, 2, 4, 0) if channels_last else (1, 3, 0, 2, 4)
    return grid.permute(order).reshape((h // patch) * (w // patch), -1)


def pack(images: Sequence[torch.Tensor], patch: int, channels_last: bool = True,
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad the images' patch sequences to one length.

    Returns (patches (B, N, p*p*3), coordinates (B, N, 2) as (row, column), valid (B, N) bool);
    padding has coordinate (0, 0) and valid False.
    """
    for image in images:
        if image.ndim != 3 or image.shape[1] % patch or image.shape[2] % patch:
            raise VitbenchError(f"variable-size images must be (3, H, W) with H and W multiples "
                                f"of the patch size {patch}, got {tuple(image.shape)} (use the "
                                "encoder's transform)")
    grids = [(image.shape[1] // patch, image.shape[2] // patch) for image in images]
    longest = max(h * w for h, w in grids)
    first = images[0]
    patches = first.new_zeros(len(images), longest, patch * patch * first.shape[0])
    coords = torch.zeros(len(images), longest, 2, dtype=torch.long, device=first.device)
    valid = torch.zeros(len(images), longest, dtype=torch.bool, device=first.device)
    for i, (image, (h, w)) in enumerate(zip(images, grids, strict=True)):
        rows, cols = torch.meshgrid(torch.arange(h, device=first.device),
                                    torch.arange(w, device=first.device), indexing="ij")
        patches[i, :h * w] = patchify(image, patch, channels_last)
        coords[i, :h * w] = torch.stack([rows.flatten(), cols.flatten()], dim=1)
        valid[i, :h * w] = True
    return patches, coords, valid


def naflex_forward(model: torch.nn.Module, images: list[torch.Tensor], layers: tuple[int, ...],
                   name: str) -> ImageFeatures:
    """Encode differently sized images in one padded, masked pass of a timm NaFlexVit."""
    embeds = getattr(model, "embeds", None)
    if not getattr(embeds, "is_linear", False):
        raise VitbenchError(f"{name} cannot encode a list of differently sized images (only "
                            "NaFlex ViTs with a linear patch embedding can); stack one size")
    if layers:
        raise VitbenchError(f"{name}: per-layer features are not available for a list of "
                            "differently sized images; pass one size as a (B, 3, H, W) tensor")
    patches, coords, valid = pack(images, embeds.patch_size[0], embeds.channels_last)
    out = model.forward_features(patches, patch_coord=coords, patch_valid=valid)
    feats, valid = out["patches"], out["patch_valid"]
    pooled = model.forward_head(feats, pre_logits=True, patch_valid=valid)
    # padding tokens carry values computed from nothing: zero them so they cannot pass for data
    tokens = feats[:, model.num_prefix_tokens:] * valid.unsqueeze(-1)
    return ImageFeatures(pooled=pooled, tokens=tokens, token_mask=valid)
