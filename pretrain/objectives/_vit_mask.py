"""Running a timm ViT / EVA backbone on masked inputs, from its own parts.

Masked image modelling needs two things the zoo adapter's plain forward does not give:
MAE's encoder sees only the visible patches (fewer tokens), and BEiT/EVA replace masked patch
embeddings by a learned mask token before the position embedding. Both are built from the
backbone's `patch_embed`, `_pos_embed` (which for EVA also returns the RoPE table), `norm_pre`,
`blocks` and `norm`, so the weights trained here are exactly the ones the run directory saves.
Masks are (B, N) bool, True = masked, patches row-major (vitbench.pretrain.masking).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def grid_of(backbone: nn.Module, pixels: Tensor) -> tuple[int, int]:
    """The patch grid (rows, columns) `pixels` make for this backbone."""
    size = backbone.patch_embed.patch_size
    return pixels.shape[-2] // size[0], pixels.shape[-1] // size[1]


def _prefix(backbone: nn.Module) -> int:
    return int(getattr(backbone, "num_prefix_tokens", 0))


def _embed(backbone: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """Position embedding (and prefix tokens); EVA's `_pos_embed` also returns its RoPE."""
    out = backbone._pos_embed(x)
    x, rope = out if isinstance(out, tuple) else (out, None)
    return backbone.norm_pre(x), rope


def _blocks(backbone: nn.Module, x: Tensor, rope: Tensor | None) -> Tensor:
    for block in backbone.blocks:
        x = block(x) if rope is None else block(x, rope=rope)
    return backbone.norm(x)


def masked_forward(backbone: nn.Module, pixels: Tensor, mask: Tensor,
                   mask_token: Tensor) -> Tensor:
    """BEiT/EVA: every patch goes in, masked ones as `mask_token` (1, 1, D), then the position
    embedding. Returns the (B, N, D) patch tokens after the final norm (no prefix tokens)."""
    x = backbone.patch_embed(pixels)  # (B, H, W, D) with dynamic_img_size, else (B, N, D)
    keep = (~mask).reshape(*x.shape[:-1], 1).to(x.dtype)
    x = x * keep + mask_token.to(x.dtype).reshape(1, *([1] * (x.ndim - 2)), -1) * (1 - keep)
    x, rope = _embed(backbone, x)
    return _blocks(backbone, x, rope)[:, _prefix(backbone):]


def visible_forward(backbone: nn.Module, pixels: Tensor, mask: Tensor) -> Tensor:
    """MAE: the encoder sees the prefix tokens and the visible patches only (every row must keep
    the same number, as `random_mask` guarantees). Returns (B, prefix + visible, D)."""
    x, rope = _embed(backbone, backbone.patch_embed(pixels))
    b, _, d = x.shape
    n_prefix = _prefix(backbone)
    patches = x[:, n_prefix:]
    visible = patches[~mask].reshape(b, -1, d)
    x = torch.cat([x[:, :n_prefix], visible], dim=1)
    if rope is not None:  # EVA: the RoPE rows of the kept patches, per sample
        index = (~mask).nonzero()[:, 1].reshape(b, -1)
        rope = rope[index].unsqueeze(1)  # (B, 1, visible, dim): broadcast over heads
    return _blocks(backbone, x, rope)
