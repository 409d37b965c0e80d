"""MAE: masked autoencoders reconstruct the pixels of removed patches (arXiv:2111.06377).

The encoder sees only the 25% visible patches (the paper's source of speed); a small decoder
gets the encoded visible tokens back in place, mask tokens elsewhere and its own position
embeddings, and predicts each masked patch's per-patch normalised pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from vitbench.contract import Encoder
from vitbench.pretrain.losses import mae_loss, patchify
from vitbench.pretrain.masking import random_mask
from vitbench.pretrain.objectives._vit_mask import grid_of, visible_forward
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput


@dataclass
class MaeParams(Hyperparameters):
    """MAE (arXiv:2111.06377, Table 8 / App. A.1): AdamW betas (0.9, 0.95), wd 0.05, base lr
    1.5e-4 per 256 images, 40 warmup epochs of 800, no gradient clipping, 75% random masking,
    normalised-pixel targets. The paper's decoder is 8 blocks of width 512 (16 heads); the
    default here is a 2-block, 64-wide decoder sized for the pico students (a 512-wide decoder
    would cost ~50x the encoder on CPU) -- override decoder_* for the paper's."""

    lr: float = 1.5e-4
    batch_size: int = 256
    weight_decay: float = 0.05
    warmup_fraction: float = 40 / 800
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = None
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4


class MaeDecoder(nn.Module):
    """Encoder width -> decoder width, mask tokens scattered in, learned positions, blocks,
    a linear head to the pixels of one patch (MAE's lightweight decoder)."""

    def __init__(self, in_dim: int, p: MaeParams, num_patches: int, num_prefix: int,
                 patch_pixels: int):
        super().__init__()
        self.num_prefix = num_prefix
        self.embed = nn.Linear(in_dim, p.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, p.decoder_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_prefix + num_patches, p.decoder_dim))
        self.blocks = nn.Sequential(*[Block(p.decoder_dim, p.decoder_heads, qkv_bias=True)
                                      for _ in range(p.decoder_depth)])
        self.norm = nn.LayerNorm(p.decoder_dim)
        self.head = nn.Linear(p.decoder_dim, patch_pixels)
        trunc_normal_(self.mask_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, latent: Tensor, mask: Tensor) -> Tensor:
        """(B, prefix + visible, D_enc) and the (B, N) mask -> (B, N, patch_pixels)."""
        x = self.embed(latent)
        prefix, visible = x[:, : self.num_prefix], x[:, self.num_prefix:]
        full = self.mask_token.expand(mask.shape[0], mask.shape[1], -1).to(x.dtype)
        full = full.masked_scatter((~mask).unsqueeze(-1), visible)  # visible back in place
        x = torch.cat([prefix, full], dim=1) + self.pos_embed.to(x.dtype)
        x = self.norm(self.blocks(x))
        return self.head(x[:, self.num_prefix:])


class Mae(Objective):
    name = "mae"
    Params = MaeParams
    paper = "arXiv:2111.06377 (MAE)"

    def __init__(self, encoder: Encoder, params: MaeParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        size = encoder.spec.input_size
        self.grid = grid_of(self.backbone, torch.empty(1, 3, size, size))
        self.patch = encoder.spec.patch_size
        self.decoder = MaeDecoder(self.feature_dim, params, self.grid[0] * self.grid[1],
                                  int(getattr(self.backbone, "num_prefix_tokens", 0)),
                                  3 * self.patch ** 2)

    def draw_mask(self, batch: int, device: torch.device) -> Tensor:
        n = self.grid[0] * self.grid[1]
        return random_mask(batch, n, self.params.mask_ratio, device=device)

    def predict(self, images: Tensor, mask: Tensor) -> Tensor:
        """Encode the visible patches, decode every patch: (B, N, 3 p^2)."""
        return self.decoder(visible_forward(self.backbone, images, mask), mask)

    def forward(self, batch: dict) -> StepOutput:
        images = batch["image"]
        if grid_of(self.backbone, images) != self.grid:
            raise ValueError(f"mae: images must be {self.grid} patches (the decoder's grid)")
        mask = self.draw_mask(images.shape[0], images.device)
        pred = self.predict(images, mask)
        loss = mae_loss(pred, patchify(images, self.patch), mask, self.params.norm_pix_loss)
        return StepOutput(loss, {"masked": mask.float().mean()})
