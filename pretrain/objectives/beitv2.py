"""BEiT v2: masked prediction of VQ-KD codes, a tokenizer distilled from a teacher's features
(arXiv:2208.06366).

As in beit.py the tokenizer trains during the first `tokenizer_fraction` of the run, then is
frozen for masked token prediction. Here it is a VQ-KD: its codes are trained to reconstruct
the patch features of a frozen teacher (Params `teacher`: a zoo name or run directory, e.g. a
`clip` run; the paper used CLIP-B/16), so the prediction targets carry semantics, not pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vitbench.contract import Encoder
from vitbench.pretrain.objectives._teacher import Teacher
from vitbench.pretrain.objectives._tokenizers import VQKD
from vitbench.pretrain.objectives._vit_mask import grid_of
from vitbench.pretrain.objectives.beit import Beit, BeitParams


@dataclass
class BeitV2Params(BeitParams):
    """BEiT v2 (arXiv:2208.06366, Tables 13-14, ViT-B/16 pre-training): AdamW betas
    (0.9, 0.98), wd 0.05, peak lr 1.5e-3 for a 2048 batch, 10 warmup epochs, grad clip 3.0,
    40% block-wise masking; VQ-KD with 8192 codes of dimension 32 (cosine codebook) and a
    CLIP-B/16 teacher. Here `codebook_size` codes (256) and any `teacher`; the default
    (random "vit_pico") only makes smoke runs work."""

    betas: tuple[float, float] = (0.9, 0.98)
    code_dim: int = 32
    commitment: float = 0.25
    teacher: str = "vit_pico"


class BeitV2(Beit):
    name = "beitv2"
    Params = BeitV2Params
    paper = "arXiv:2208.06366 (BEiT v2)"

    def build_tokenizer(self, encoder: Encoder) -> nn.Module:
        self.teacher = Teacher(self.params.teacher, encoder)
        size = encoder.spec.input_size
        grid = grid_of(self.backbone, torch.empty(1, 3, size, size))
        return VQKD(encoder.spec.patch_size, self.params.codebook_size, self.teacher.width,
                    code_dim=self.params.code_dim, grid=grid[0])

    def tokenizer_loss(self, images: Tensor) -> tuple[Tensor, dict]:
        target = self.teacher(images, grid_of(self.backbone, images))
        return self.tokenizer.loss(images, target, self.params.commitment)
