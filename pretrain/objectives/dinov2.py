"""DINOv2 (arXiv:2304.07193): DINO + iBOT with untied heads, Sinkhorn-Knopp and KoLeo.

The losses are iBOT's (image-level DINO loss over crops, masked patch self-distillation on the
global crops), with three changes the paper makes: separate [CLS] and patch heads, the
teacher's running centre replaced by Sinkhorn-Knopp normalisation (SwAV's balanced
assignments, computed per batch), and the KoLeo regulariser spreading the student's pooled
features of each global crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vitbench.pretrain.losses import koleo_loss, sinkhorn_knopp
from vitbench.pretrain.objectives.ibot import Ibot, IbotParams


@dataclass
class Dinov2Params(IbotParams):
    """DINOv2 (arXiv:2304.07193, Sec. 4-5 and its ssl_default_config.yaml): AdamW, base lr
    4e-3 per 1024 images (the code scales it by sqrt(batch / 1024); the trainer here scales
    linearly), weight decay 0.04 -> 0.2, 10 warmup epochs of 100, cosine to 1e-6, clipping
    3.0, layer-wise lr decay 0.9, teacher momentum 0.992 -> 1, teacher temperature 0.04 ->
    0.07 over 30 epochs, 65536 prototypes with 256-dim bottleneck for both heads (separate),
    masks on half of the images with ratio in [0.1, 0.5], 3 Sinkhorn-Knopp iterations, KoLeo
    weight 0.1; global crops 0.32-1 and 8 local crops 0.05-0.32 (DINO's crops here, 2 local).
    Not reproduced: drop path, the first epoch's frozen last layer, register tokens."""

    lr: float = 4e-3
    batch_size: int = 1024
    weight_decay_end: float | None = 0.2
    warmup_fraction: float = 0.1
    layer_decay: float | None = 0.9
    momentum_teacher: float = 0.992
    out_dim: int = 65536
    patch_out_dim: int = 65536
    shared_head: bool = False
    sinkhorn_iterations: int = 3
    koleo_weight: float = 0.1


class Dinov2(Ibot):
    name = "dinov2"
    Params = Dinov2Params
    paper = "arXiv:2304.07193 (DINOv2)"

    def teacher_targets(self, logits: Tensor) -> Tensor:
        return sinkhorn_knopp(logits, self.teacher_temp(), self.params.sinkhorn_iterations)

    def patch_targets(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Sinkhorn-Knopp over the masked patches only (the ones the loss reads), as DINOv2."""
        probs = torch.zeros_like(logits, dtype=torch.float32)
        if mask.any():
            probs[mask] = sinkhorn_knopp(logits[mask], self.teacher_temp(),
                                         self.params.sinkhorn_iterations)
        return probs

    def regulariser(self, pooled: Tensor) -> dict[str, Tensor]:
        weight = self.params.koleo_weight
        return {"koleo": weight * sum(koleo_loss(view) for view in pooled.chunk(2))}
