"""DINO: self-distillation with no labels (arXiv:2104.14294).

A student (backbone + projection head) matches, on every crop, the sharpened distribution that
an EMA teacher gives on the *other* global crops. The teacher sees only the two global crops;
the student also sees small local crops, which forces local-to-global correspondence. Collapse
is held off on the teacher side: its logits are centred (an EMA of their batch mean) and
sharpened by a low temperature. The teacher is the EMA of backbone + head, updated after each
optimiser step with a momentum that follows a cosine from 0.996 to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vitbench.contract import Encoder
from vitbench.errors import VitbenchError
from vitbench.pretrain.data import View
from vitbench.pretrain.ema import EMA
from vitbench.pretrain.losses import DinoCenter, dino_loss, teacher_temperature
from vitbench.pretrain.objectives._heads import DinoHead, vit_forward
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput
from vitbench.pretrain.schedules import ema_momentum

# DINO's multi-crop: two global crops (blur p=1.0 and p=0.1; the paper's scale 0.4-1) and
# local crops at half the resolution, scale 0.1-0.4 here (the paper: 96 px of 224, 0.05-0.4).
# The paper takes 10 local crops; 2 keep a CPU step cheap (each view is augmented per image in
# Python, which costs more than the tiny model's forward).
# Colour jitter and grayscale are left out: on the CPU they cost more than the model's step
# (per-image tensor ops), and on the embedded digits (grayscale scans) they change nothing.
GLOBAL_VIEWS = (View(scale=(0.4, 1.0), blur=1.0), View(scale=(0.4, 1.0), blur=0.1))
LOCAL_VIEW = View(size=0.5, scale=(0.1, 0.4), blur=0.5)
LOCAL_CROPS = 2


@dataclass
class DinoParams(Hyperparameters):
    """DINO ViT-S/16 (arXiv:2104.14294, Sec. 4 / appendix A, and its main_dino.py): AdamW, lr
    5e-4 per 256 images (batch 1024), warmup 10 of 100 epochs, cosine to 1e-6, weight decay
    cosine 0.04 -> 0.4, gradient clipping 3.0; head 2048 hidden, 256 bottleneck, 65536
    prototypes; student temperature 0.1, teacher 0.04 -> 0.07 over the first 30 of 300 epochs
    (0.1 of the run), centre momentum 0.9, teacher momentum 0.996 -> 1; 2 global + 10 local
    crops (LOCAL_CROPS = 2 here). Not reproduced: freezing the last layer in the first
    epoch, drop path, solarisation, colour jitter. The tiny learns run overrides the head size
    and prototypes."""

    lr: float = 5e-4
    batch_size: int = 256
    weight_decay: float = 0.04
    weight_decay_end: float | None = 0.4
    warmup_fraction: float = 0.1
    grad_clip: float | None = 3.0
    min_lr: float = 1e-6
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    use_bn_in_head: bool = False
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    teacher_temp_end: float = 0.07
    teacher_temp_warmup_fraction: float = 0.1
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996
    # local crops the loss uses: the paper's 10, capped at the LOCAL_CROPS each batch carries
    # (`views` is a class attribute, fixed before the run's overrides); 0 trains on the two
    # global crops alone, which DINO's multi-crop ablation (Table 7 of the paper) also runs
    local_crops: int = 10


class Dino(Objective):
    name = "dino"
    views = (*GLOBAL_VIEWS, *(LOCAL_VIEW,) * LOCAL_CROPS)
    Params = DinoParams
    paper = "arXiv:2104.14294 (DINO)"

    def __init__(self, encoder: Encoder, params: DinoParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        if params.local_crops > 0:
            _check_takes_local_crops(encoder, self.name)
        self.head = self._make_head()
        self.teacher = EMA(self._student())
        self.center = DinoCenter(params.out_dim, params.center_momentum)
        # steps done and the run's length (known from the first after_step on): the teacher
        # temperature and the masks are pure functions of them, so a resume replays exactly
        self.register_buffer("progress", torch.zeros(2, dtype=torch.long))

    def _make_head(self) -> nn.Module:
        p = self.params
        return DinoHead(self.feature_dim, p.out_dim, p.hidden_dim, p.bottleneck_dim,
                        p.use_bn_in_head)

    def _student(self) -> nn.ModuleDict:
        """What the teacher averages (built on the fly: registering it would save the
        backbone twice)."""
        return nn.ModuleDict({"backbone": self.backbone, "head": self.head})

    @property
    def step(self) -> int:
        return int(self.progress[0])

    def teacher_temp(self) -> float:
        p = self.params
        if int(self.progress[1]) == 0:  # the first step: the run's length is not known yet,
            return p.teacher_temp  # but any warm-up starts at its first value
        warmup = round(p.teacher_temp_warmup_fraction * int(self.progress[1]))
        return teacher_temperature(self.step, warmup, p.teacher_temp, p.teacher_temp_end)

    def teacher_targets(self, logits: Tensor) -> Tensor:
        """Centre, sharpen, then move the centre (DINO); DINOv2 swaps in Sinkhorn-Knopp."""
        return self.center(logits, self.teacher_temp())

    @torch.no_grad()
    def teacher_forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """The teacher's (pooled, patch tokens) of the global crops, unmasked."""
        return vit_forward(self.teacher.module["backbone"], pixels)

    def forward(self, batch: dict) -> StepOutput:
        views = batch["views"]
        globals_, locals_ = torch.cat(views[:2]), self.local_views(views)
        with torch.no_grad():
            teacher = self.teacher.module["head"](self.teacher_forward(globals_)[0])
            targets = self.teacher_targets(teacher).chunk(2)
        student = self.head(self.features(globals_)).chunk(2)
        if locals_:
            student += self.head(self.features(torch.cat(locals_))).chunk(len(locals_))
        loss = dino_loss(student, targets, self.params.student_temp)
        return StepOutput(loss, {"teacher_temp": self.teacher_temp(),
                                 "teacher_entropy": _entropy(torch.cat(targets))})

    def local_views(self, views: list[Tensor]) -> list[Tensor]:
        """The local crops the loss uses: the first `local_crops` after the two globals."""
        return list(views[2:2 + max(self.params.local_crops, 0)])

    def after_step(self, step: int, total: int) -> None:
        self.teacher.update(self._student(),
                            ema_momentum(step, total, self.params.momentum_teacher))
        self.progress.copy_(torch.tensor([step + 1, total]))


@torch.no_grad()
def _check_takes_local_crops(encoder: Encoder, objective: str) -> None:
    """One-line error, before training, for a backbone fixed to its input size (BEiT's relative
    position tables, convnets built for one size): local crops are half the global side."""
    side = max(1, round(encoder.resolution * LOCAL_VIEW.size))
    try:
        encoder._forward(torch.zeros(1, 3, side, side))
    except Exception as exc:  # backends fail in their own ways; each means "no"
        raise VitbenchError(f"{objective}'s {side} px local crops do not fit {encoder.spec.name} "
                            f"({type(exc).__name__}); pick a model that takes any input size, "
                            "or --set local_crops=0") from exc


def _entropy(probs: Tensor) -> Tensor:
    """Mean entropy of the teacher's targets (near 0: one prototype per image; log K: flat)."""
    return -(probs * probs.clamp(min=1e-12).log()).sum(-1).mean()
