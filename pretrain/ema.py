"""EMA teachers: a frozen copy of a module that follows the student by exponential averaging.

DINO/iBOT/DINOv2 teach with an EMA of the student; ALBEF/BLIP keep momentum encoders for
distillation targets. The momentum comes from `schedules.ema_momentum` (a pure function of the
step), so the teacher resumes exactly: its weights are part of the objective's state dict.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """`EMA(student)`: a deep copy with gradients off; `update(student, m)` sets
    teacher = m * teacher + (1 - m) * student for every parameter (buffers are copied)."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(student)
        self.module.requires_grad_(False)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        teacher = list(self.module.parameters())
        source = list(student.parameters())
        if len(teacher) != len(source):
            raise ValueError("EMA.update: the student's parameters differ from the teacher's")
        torch._foreach_lerp_(teacher, [p.detach() for p in source], 1.0 - momentum)
        for mine, theirs in zip(self.module.buffers(), student.buffers(), strict=True):
            mine.copy_(theirs)
