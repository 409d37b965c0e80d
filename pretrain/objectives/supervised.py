"""Supervised classification: cross-entropy with label smoothing on a linear head (DeiT)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vitbench.contract import Encoder
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput


@dataclass
class SupervisedParams(Hyperparameters):
    """DeiT (arXiv:2012.12877, Table 9): AdamW, lr 5e-4 per 512 images, wd 0.05, 5 warmup
    epochs of 300, label smoothing 0.1. Not reproduced here: mixup/cutmix, RandAugment, random
    erasing, stochastic depth and repeated augmentation."""

    lr: float = 5e-4
    batch_size: int = 512
    weight_decay: float = 0.05
    warmup_fraction: float = 5 / 300
    grad_clip: float | None = None
    min_lr: float = 1e-5
    label_smoothing: float = 0.1


class Supervised(Objective):
    name = "supervised"
    needs = ("label",)
    Params = SupervisedParams
    paper = "arXiv:2012.12877 (DeiT)"

    def __init__(self, encoder: Encoder, params: SupervisedParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        if num_classes < 2:
            from vitbench.errors import VitbenchError

            raise VitbenchError("supervised pretraining needs a labelled dataset (>= 2 classes)")
        self.head = nn.Linear(self.feature_dim, num_classes)
        nn.init.zeros_(self.head.weight)  # DeiT/timm zero-init the classifier
        nn.init.zeros_(self.head.bias)

    def forward(self, batch: dict) -> StepOutput:
        logits = self.head(self.features(batch["image"])).float()
        loss = nn.functional.cross_entropy(logits, batch["label"],
                                           label_smoothing=self.params.label_smoothing)
        with torch.no_grad():
            accuracy = (logits.argmax(1) == batch["label"]).float().mean()
        return StepOutput(loss, {"acc": accuracy})
