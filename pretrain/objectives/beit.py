"""BEiT: predict the visual tokens of block-masked patches (arXiv:2106.08254).

BEiT's tokenizer is DALL-E's dVAE, trained beforehand on 250M images; none can be downloaded
here, so the objective trains its own small dVAE on the run's data during the first
`tokenizer_fraction` of the run's steps (only the tokenizer learns then), freezes it, and
spends the rest of the run on masked token prediction (only the student learns). So
`vitbench pretrain --objective beit` runs end to end with nothing prepared. The phase is a
buffer, so a resumed run continues in the right one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from vitbench.contract import Encoder
from vitbench.pretrain.losses import beit_mim_loss
from vitbench.pretrain.masking import BEIT_MASK_RATIO, block_mask
from vitbench.pretrain.objectives._tokenizers import DVAE
from vitbench.pretrain.objectives._vit_mask import grid_of, masked_forward
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput
from vitbench.pretrain.objectives.eva import scaled_min_patches


@dataclass
class BeitParams(Hyperparameters):
    """BEiT (arXiv:2106.08254, Table 11, pre-training of BEiT-B): AdamW betas (0.9, 0.999),
    wd 0.05, peak lr 1.5e-3 for a 2048 batch, 10 warmup epochs of 800, grad clip 3.0, ~40%
    block-wise masking with blocks of >= 16 of 196 patches (scaled to the grid here). The
    paper's tokenizer has 8192 codes; the dVAE trained here has `codebook_size` (256) and
    trains for the first `tokenizer_fraction` of the run."""

    lr: float = 1.5e-3
    batch_size: int = 2048
    weight_decay: float = 0.05
    warmup_fraction: float = 10 / 800
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 3.0
    mask_ratio: float = BEIT_MASK_RATIO
    min_mask_patches: int = 16
    codebook_size: int = 256
    tokenizer_fraction: float = 0.3
    dvae_temperature: float = 1.0
    dvae_kl_weight: float = 0.01


class Beit(Objective):
    name = "beit"
    Params = BeitParams
    paper = "arXiv:2106.08254 (BEiT)"

    def __init__(self, encoder: Encoder, params: BeitParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.feature_dim))
        trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(self.feature_dim, params.codebook_size)
        self.tokenizer = self.build_tokenizer(encoder)
        self.register_buffer("tokenizer_done", torch.tensor(False))

    def build_tokenizer(self, encoder: Encoder) -> nn.Module:
        return DVAE(encoder.spec.patch_size, self.params.codebook_size)

    def tokenizer_loss(self, images: Tensor) -> tuple[Tensor, dict]:
        p = self.params
        return self.tokenizer.loss(images, p.dvae_temperature, p.dvae_kl_weight)

    def draw_mask(self, grid: tuple[int, int], batch: int, device: torch.device) -> Tensor:
        return block_mask(batch, grid, self.params.mask_ratio, device=device,
                          min_patches=scaled_min_patches(self.params.min_mask_patches, grid))

    def predict(self, images: Tensor, mask: Tensor) -> Tensor:
        """(B, N, codebook_size) logits from the masked student."""
        return self.head(masked_forward(self.backbone, images, mask, self.mask_token))

    def forward(self, batch: dict) -> StepOutput:
        images = batch["image"]
        if not bool(self.tokenizer_done):  # phase 1: the tokenizer learns the data
            loss, metrics = self.tokenizer_loss(images)
            return StepOutput(loss, {"phase": 1.0, **metrics})
        self.tokenizer.eval()
        ids = self.tokenizer.tokens(images)
        mask = self.draw_mask(grid_of(self.backbone, images), images.shape[0], images.device)
        logits = self.predict(images, mask)
        loss = beit_mim_loss(logits, ids, mask)
        with torch.no_grad():
            accuracy = (logits[mask].argmax(-1) == ids[mask]).float().mean()
        return StepOutput(loss, {"phase": 2.0, "token_acc": accuracy})

    def after_step(self, step: int, total: int) -> None:
        if step + 1 >= round(self.params.tokenizer_fraction * total):
            self.tokenizer_done.fill_(True)
            self.tokenizer.requires_grad_(False)
