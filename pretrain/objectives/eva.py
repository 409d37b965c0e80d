"""EVA: masked image modelling that regresses a frozen image-text teacher's patch features
(arXiv:2211.07636); EVA-02 (arXiv:2303.11331) is the same pretext with an EVA-02 student
(RoPE, SwiGLU: `--model eva02_pico`) and an EVA-CLIP teacher.

The student sees every patch, ~40% of them (blockwise) replaced by a mask token; a linear
head maps its patch tokens to the teacher's width, scored by negative cosine at the masked
positions. The teacher (Params `teacher`: a zoo name or a run directory, e.g. a `clip` run)
must give patch tokens on the student's grid (resampled if not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from vitbench.contract import Encoder
from vitbench.pretrain.losses import eva_feature_loss
from vitbench.pretrain.masking import BEIT_MASK_RATIO, block_mask
from vitbench.pretrain.objectives._teacher import Teacher
from vitbench.pretrain.objectives._vit_mask import grid_of, masked_forward
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput


@dataclass
class EvaParams(Hyperparameters):
    """EVA (arXiv:2211.07636, Table 11, MIM pre-training of EVA-g): AdamW betas (0.9, 0.98),
    wd 0.05, peak lr 3e-3 for a 4096 batch, cosine decay, warmup ~2% of the run (15k of
    ~150 epochs on 29.6M images), 40% block-wise masking, grad clip 3.0. Teacher: OpenAI
    CLIP-L/14; here any encoder named by `teacher` (the default, random "vit_pico", only makes
    smoke runs work: pass a trained run directory)."""

    lr: float = 3e-3
    batch_size: int = 4096
    weight_decay: float = 0.05
    warmup_fraction: float = 0.02
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float | None = 3.0
    mask_ratio: float = BEIT_MASK_RATIO
    min_mask_patches: int = 16  # of 196 (BEiT/EVA); scaled to the student's grid
    teacher: str = "vit_pico"


def scaled_min_patches(min_patches: int, grid: tuple[int, int]) -> int:
    """BEiT's minimum block of 16 patches is for a 14 x 14 grid; keep its share of the grid."""
    return max(1, round(min_patches * grid[0] * grid[1] / 196))


class Eva(Objective):
    name = "eva"
    Params = EvaParams
    paper = "arXiv:2211.07636 (EVA)"

    def __init__(self, encoder: Encoder, params: EvaParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.feature_dim))
        trunc_normal_(self.mask_token, std=0.02)
        self.teacher = Teacher(params.teacher, encoder)
        self.head = nn.Linear(self.feature_dim, self.teacher.width)

    def draw_mask(self, grid: tuple[int, int], batch: int, device: torch.device) -> Tensor:
        return block_mask(batch, grid, self.params.mask_ratio, device=device,
                          min_patches=scaled_min_patches(self.params.min_mask_patches, grid))

    def predict(self, images: Tensor, mask: Tensor) -> Tensor:
        """(B, N, teacher width) predictions from the masked student."""
        return self.head(masked_forward(self.backbone, images, mask, self.mask_token))

    def forward(self, batch: dict) -> StepOutput:
        images = batch["image"]
        grid = grid_of(self.backbone, images)
        mask = self.draw_mask(grid, images.shape[0], images.device)
        target = self.teacher(images, grid)
        loss = eva_feature_loss(self.predict(images, mask), target, mask)
        return StepOutput(loss, {"masked": mask.float().mean()})


@dataclass
class Eva02Params(EvaParams):
    """EVA-02 (arXiv:2303.11331, Table 3, MIM pre-training of EVA-02-B): AdamW betas
    (0.9, 0.98), wd 0.05, peak lr 3e-3 for a 2048 batch, cosine decay, warmup ~1% of the run,
    40% block-wise masking, grad clip 3.0; teacher EVA-CLIP-g/14. Train with
    `--model eva02_pico` (RoPE, SwiGLU, sub-LN); the default teacher is only for smoke runs."""

    batch_size: int = 2048
    warmup_fraction: float = 0.01


class Eva02(Eva):
    name = "eva02"
    Params = Eva02Params
    paper = "arXiv:2303.11331 (EVA-02)"
