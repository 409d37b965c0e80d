"""Pieces shared by the self-distillation objectives (DINO, iBOT, DINOv2).

The projection head maps pooled (or patch) features onto K prototypes; `vit_forward` runs a timm
ViT part by part so that masked patch embeddings can be swapped for a learnable mask token
before the blocks (iBOT/DINOv2), which the plain `forward_features` has no hook for.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class DinoHead(nn.Module):
    """DINO's head (arXiv:2104.14294, Sec. 3 and appendix): a 3-layer MLP (GELU) to a
    `bottleneck`-dim vector, L2-normalised, then a weight-normalised linear layer without bias
    onto `out_dim` prototypes. The weight norm's gain is fixed to 1 (DINO's norm_last_layer),
    so the last layer is written as rows normalised on the fly: the same function, and a plain
    parameter that EMA copies and checkpoints need no parametrisation for."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048, bottleneck: int = 256,
                 use_bn: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for width in (in_dim, hidden):
            layers += [nn.Linear(width, hidden), *([nn.BatchNorm1d(hidden)] * use_bn), nn.GELU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):  # DINO: trunc_normal(std=0.02), zero bias
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim): pooled (B, D) or patch tokens (B, N, D)."""
        lead = x.shape[:-1]
        x = F.normalize(self.mlp(x.flatten(0, -2)), dim=-1)  # BatchNorm1d wants (rows, D)
        return F.linear(x, F.normalize(self.prototypes, dim=-1)).unflatten(0, lead)


def vit_forward(model: nn.Module, pixels: Tensor, mask: Tensor | None = None,
                mask_token: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(pooled, patch tokens) of a timm ViT, with patches where `mask` (B, N) is True replaced
    by `mask_token` (D,) after the patch embedding and before the position embedding
    (iBOT's and DINOv2's place for it). Without a mask this is `forward_features` +
    `forward_head(pre_logits=True)`, i.e. the features the zoo adapter gives."""
    x = model.patch_embed(pixels)  # (B, H, W, D) under dynamic_img_size, else (B, N, D)
    if mask is not None:
        if mask_token is None:
            raise ValueError("vit_forward: a mask needs a mask_token")
        x = torch.where(mask.view(*x.shape[:-1], 1), mask_token.to(x.dtype), x)
    x = model.norm_pre(model.patch_drop(model._pos_embed(x)))
    x = model.norm(model.blocks(x))
    return model.forward_head(x, pre_logits=True), x[:, model.num_prefix_tokens:]
