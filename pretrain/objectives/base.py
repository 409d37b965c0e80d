"""The objective interface: what every pretraining loss looks like to the one trainer.

An objective is an `nn.Module` that owns the encoder being trained plus whatever the loss needs
(a classifier head, a text tower, a teacher). The trainer only calls `forward(batch)`,
`after_step(step, total)` and `encoder()`, so adding an objective never touches the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from vitbench.contract import Encoder
from vitbench.pretrain.data import View


@dataclass
class Hyperparameters:
    """Optimiser defaults every objective records (the paper's values in each subclass).

    lr is the peak learning rate for `batch_size` images per step; the trainer scales it
    linearly to the actual batch when the user gives no --lr (the papers' own rule).
    """

    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 0.05
    weight_decay_end: float | None = None  # None: constant
    warmup_fraction: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    min_lr: float = 0.0
    layer_decay: float | None = None  # layer-wise lr decay (BEiT): block i of L gets d^(L-i)


@dataclass
class StepOutput:
    """The loss to minimise and scalar metrics to log (python floats or 0-d tensors)."""

    loss: torch.Tensor
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class. Subclasses set `name`, `needs` and `Params` and implement `forward`.

    Attributes:
        name: the registry name (`vitbench pretrain --objective NAME`).
        needs: what a batch must carry besides "image": "label" and/or "caption".
        Params: the hyperparameter dataclass with the paper's defaults.
        paper: where the defaults come from.
        views: augmented views each batch carries as batch["views"] (multi-view objectives);
            batch["image"] is always there (one default crop per image).
    """

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    views: ClassVar[tuple[View, ...]] = ()
    Params: ClassVar[type[Hyperparameters]] = Hyperparameters
    paper: ClassVar[str] = ""

    def __init__(self, encoder: Encoder, params: Hyperparameters, num_classes: int = 0):
        super().__init__()
        self.params = params
        self.backbone = encoder.modules()[0]  # registered: its weights train and checkpoint
        self._encoder = encoder  # a plain attribute: the adapter that runs `backbone`
        self.num_classes = num_classes

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled image features through the entry's adapter, with gradients (the same
        features `encode_image` gives at evaluation time, so training and kNN agree)."""
        return self._encoder._forward(pixels).pooled

    @property
    def feature_dim(self) -> int:
        return self._encoder.spec.embed_dim

    def forward(self, batch: dict) -> StepOutput:
        raise NotImplementedError

    def after_step(self, step: int, total: int) -> None:
        """Called after each optimiser step (EMA teachers update here)."""

    def stage_starts(self, total: int) -> tuple[int, ...]:
        """Steps where a stage that the paper trains as a separate run begins; the trainer
        restarts the warmup and cosine there. One stage by default."""
        return (0,)

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image-text objectives: L2-normalised image embeddings in the joint space."""
        raise NotImplementedError(f"{self.name} has no joint image-text space")

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Image-text objectives: L2-normalised text embeddings in the joint space."""
        raise NotImplementedError(f"{self.name} has no joint image-text space")

    def encoder(self) -> nn.Module:
        """The module whose state dict the run directory saves (the base entry's format)."""
        return self.backbone
