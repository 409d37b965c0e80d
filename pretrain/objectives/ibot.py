"""iBOT: image BERT pre-training with an online tokenizer (arXiv:2111.07832).

DINO's loss on the pooled features, plus masked image modelling whose targets come from the
EMA teacher itself: the student sees its global crops with blocks of patches replaced by a
learnable mask token, the teacher sees them whole, and on the masked positions the student's
patch distribution over prototypes must match the teacher's (centred and sharpened like
DINO's, with a centre of its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vitbench.contract import Encoder
from vitbench.pretrain.losses import DinoCenter, dino_loss, ibot_patch_loss
from vitbench.pretrain.masking import block_mask
from vitbench.pretrain.objectives._heads import vit_forward
from vitbench.pretrain.objectives.base import StepOutput
from vitbench.pretrain.objectives.dino import Dino, DinoParams, _entropy


@dataclass
class IbotParams(DinoParams):
    """iBOT ViT-S/16 (arXiv:2111.07832, Sec. 4 and appendix A; its main_ibot.py): DINO's
    optimiser (lr 5e-4 per 256, batch 1024, weight decay 0.04 -> 0.4, 10 warmup epochs of 800,
    clipping 3.0), a head shared by [CLS] and patches with 8192 prototypes, teacher
    temperatures 0.04 -> 0.07 for both, loss weights 1 and 1, block-wise masks with a ratio
    drawn from [0.1, 0.5] for half of the images (the other half unmasked), 10 local crops
    (2 here). Here the pooled feature is the mean of the patch tokens (vit_pico's pooling)."""

    warmup_fraction: float = 10 / 800
    out_dim: int = 8192
    patch_out_dim: int = 8192
    shared_head: bool = True
    patch_weight: float = 1.0
    mask_ratio_min: float = 0.1
    mask_ratio_max: float = 0.5
    mask_probability: float = 0.5
    mask_min_patches: int = 4  # iBOT's min_num_patches for a block


class Ibot(Dino):
    name = "ibot"
    Params = IbotParams
    paper = "arXiv:2111.07832 (iBOT)"

    def __init__(self, encoder: Encoder, params: IbotParams, num_classes: int = 0):
        if params.shared_head and params.patch_out_dim != params.out_dim:
            params.patch_out_dim = params.out_dim  # one head: one set of prototypes
        super().__init__(encoder, params, num_classes)  # builds the heads, then the teacher
        self.mask_token = nn.Parameter(torch.zeros(self.feature_dim))  # iBOT: zero init
        self.patch_center = DinoCenter(params.patch_out_dim, params.center_momentum)

    def _make_head(self) -> nn.Module:
        head = super()._make_head()
        if not self.params.shared_head:
            p = self.params
            self.patch_head = type(head)(self.feature_dim, p.patch_out_dim, p.hidden_dim,
                                         p.bottleneck_dim, p.use_bn_in_head)
        return head

    def _student(self) -> nn.ModuleDict:
        parts = super()._student()
        if getattr(self, "patch_head", None) is not None:  # a separate patch head
            parts["patch_head"] = self.patch_head
        return parts

    def _patch_heads(self) -> tuple[nn.Module, nn.Module]:
        """(student, teacher) patch heads: the [CLS] heads when shared."""
        key = "patch_head" if "patch_head" in self.teacher.module else "head"
        return self._student()[key], self.teacher.module[key]

    def draw_masks(self, batch: int, grid: tuple[int, int], device) -> Tensor:
        """(batch, H * W) bool: with probability mask_probability an image gets block masks
        covering a ratio drawn uniformly from [mask_ratio_min, mask_ratio_max], else none.
        Seeded by (step, rank), so a resumed run draws the same masks."""
        p = self.params
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        gen = torch.Generator().manual_seed(self.step * 1009 + rank)
        masks = torch.zeros(batch, grid[0] * grid[1], dtype=torch.bool)
        for i in range(batch):
            if torch.rand((), generator=gen) < p.mask_probability:
                ratio = p.mask_ratio_min + float(torch.rand((), generator=gen)) * (
                    p.mask_ratio_max - p.mask_ratio_min)
                masks[i] = block_mask(1, grid, ratio, min_patches=p.mask_min_patches,
                                      generator=gen)[0]
        return masks.to(device)

    def patch_targets(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Teacher patch distributions (B, N, K): iBOT centres all patches; DINOv2 overrides."""
        return self.patch_center(logits, self.teacher_temp())

    def regulariser(self, pooled: Tensor) -> dict[str, Tensor]:
        """Extra loss terms on the student's pooled global features (DINOv2: KoLeo)."""
        return {}

    def forward(self, batch: dict) -> StepOutput:
        views = batch["views"]
        globals_, locals_ = torch.cat(views[:2]), self.local_views(views)
        patch = self.backbone.patch_embed.patch_size
        grid = (globals_.shape[-2] // patch[0], globals_.shape[-1] // patch[1])
        mask = self.draw_masks(len(globals_), grid, globals_.device)
        student_patch_head, teacher_patch_head = self._patch_heads()
        with torch.no_grad():
            t_pooled, t_patches = self.teacher_forward(globals_)
            targets = self.teacher_targets(self.teacher.module["head"](t_pooled)).chunk(2)
            patch_targets = self.patch_targets(teacher_patch_head(t_patches), mask)
        s_pooled, s_patches = vit_forward(self.backbone, globals_, mask, self.mask_token)
        student = self.head(s_pooled).chunk(2)
        if locals_:
            student += self.head(self.features(torch.cat(locals_))).chunk(len(locals_))
        cls_loss = dino_loss(student, targets, self.params.student_temp)
        patch_loss = ibot_patch_loss(student_patch_head(s_patches[mask]), patch_targets[mask],
                                     mask, self.params.student_temp)
        extra = self.regulariser(s_pooled)
        loss = cls_loss + self.params.patch_weight * patch_loss + sum(extra.values())
        return StepOutput(loss, {"cls_loss": cls_loss.detach(), "patch_loss": patch_loss.detach(),
                                 **{k: v.detach() for k, v in extra.items()},
                                 "masked": mask.float().mean(),
                                 "teacher_entropy": _entropy(torch.cat(targets))})
