"""FLIP: CLIP trained on a random half of each image's patches (arXiv:2212.00794).

Dropping patches before the encoder (no mask tokens, unlike MAE) makes each step cheaper, so
more pairs are seen for the same compute; the paper then tunes briefly without masking so the
encoder meets full images again before it is used. Here the masking is decided per step: the
objective remembers the step the trainer reached (after_step) in a buffer, so a resumed run
knows whether it is in the unmasked phase, and evaluation (eval mode) never masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vitbench.contract import Encoder
from vitbench.pretrain.objectives.clip import Clip, ClipParams


@dataclass
class FlipParams(ClipParams):
    """FLIP (arXiv:2212.00794, Sec. 3-4 and its appendix table of pre-training settings):
    50% of the patches dropped at random, batch 32k, AdamW with base lr 4e-6 per 256 pairs
    (5.12e-4 at 32k), betas (0.9, 0.95), weight decay 0.2, cosine schedule, 6.4 epochs of
    LAION-400M with 1.6 of warmup, the logit scale learnable from 1 / 0.07 as in CLIP; then
    unmasked tuning for 0.32 epochs, i.e. the last 5% of the steps (`unmasked_fraction`)."""

    lr: float = 4e-6 * 32768 / 256
    batch_size: int = 32768
    weight_decay: float = 0.2
    warmup_fraction: float = 1.6 / 6.4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    mask_ratio: float = 0.5
    unmasked_fraction: float = 0.32 / 6.4


def keep_indices(batch: int, tokens: int, keep: int, device: torch.device) -> torch.Tensor:
    """(batch, keep) sorted indices of a uniformly random subset of each row's tokens."""
    noise = torch.rand(batch, tokens, device=device)
    return noise.argsort(dim=1)[:, :keep].sort(dim=1).values


class Flip(Clip):
    name = "flip"
    Params = FlipParams
    paper = "arXiv:2212.00794 (FLIP)"

    def __init__(self, encoder: Encoder, params: FlipParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        # (step reached, total steps): the trainer's progress, checkpointed with the weights
        self.register_buffer("progress", torch.zeros(2, dtype=torch.long))

    @property
    def masking(self) -> bool:
        """Mask while training, until the last `unmasked_fraction` of the steps."""
        step, total = self.progress.tolist()
        tuning = total > 0 and step >= round((1 - self.params.unmasked_fraction) * total)
        return self.training and self.params.mask_ratio > 0 and not tuning

    def masked_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled features of the ViT run on the kept patches only (prefix tokens kept)."""
        vit = self.backbone
        x = vit._pos_embed(vit.patch_embed(pixels))  # positions added before dropping
        prefix = vit.num_prefix_tokens
        patches = x.shape[1] - prefix
        keep = max(1, round(patches * (1 - self.params.mask_ratio)))
        index = keep_indices(x.shape[0], patches, keep, x.device)
        kept = x[:, prefix:].gather(1, index[..., None].expand(-1, -1, x.shape[-1]))
        x = vit.norm_pre(torch.cat([x[:, :prefix], kept], 1))
        x = vit.norm(vit.blocks(x))
        return vit.forward_head(x, pre_logits=True)  # mean over the kept patch tokens

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Masked while training (CLIP's embed_image calls this), whole images otherwise."""
        return self.masked_features(pixels) if self.masking else super().features(pixels)

    def after_step(self, step: int, total: int) -> None:
        super().after_step(step, total)
        self.progress.copy_(torch.tensor([step + 1, total]))
