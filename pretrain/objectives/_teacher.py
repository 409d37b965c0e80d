"""A frozen teacher encoder (any zoo entry or run directory) whose patch tokens are targets.

EVA regresses an image-text teacher's patch features; BEiT v2's VQ-KD tokenizer learns to
reconstruct them. The teacher is named by a Params string, loaded once, never trained: its
weights are registered (so they follow `.to(device)` and a resume sees the same teacher) but
carry no gradient and so get no optimiser state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vitbench.contract import Encoder


def load_teacher(name: str) -> Encoder:
    """The encoder `name` names; entries without published weights (e.g. "vit_pico") load
    with random weights, which is only useful for smoke runs."""
    from vitbench import load
    from vitbench.zoo.registry import get_entry

    weights = get_entry(name).spec.weights
    has_weights = bool(weights.tag or weights.hf_hub_id or weights.local)
    return load(name, pretrained=has_weights)


class Teacher(nn.Module):
    """Frozen patch-token targets on the student's grid, from the student's normalised input."""

    def __init__(self, name: str, student: Encoder):
        super().__init__()
        self._encoder = load_teacher(name)
        self.model = self._encoder.modules()[0]
        self.model.requires_grad_(False)
        self.width = self._encoder.spec.embed_dim
        # the batch arrives normalised for the student; the teacher may expect other statistics
        for key, spec in (("s", student.spec), ("t", self._encoder.spec)):
            self.register_buffer(f"mean_{key}", torch.tensor(spec.mean).view(1, 3, 1, 1),
                                 persistent=False)
            self.register_buffer(f"std_{key}", torch.tensor(spec.std).view(1, 3, 1, 1),
                                 persistent=False)

    @torch.no_grad()
    def forward(self, pixels: Tensor, grid: tuple[int, int]) -> Tensor:
        """(B, N, width) patch tokens, resampled to `grid` if the teacher's grid differs."""
        self.model.eval()
        x = (pixels * self.std_s + self.mean_s - self.mean_t) / self.std_t
        tokens = self._encoder._forward(x).tokens.float()
        b, n, d = tokens.shape
        side = int(round(n ** 0.5))
        if (side, side) != tuple(grid) and side * side == n:
            square = tokens.transpose(1, 2).reshape(b, d, side, side)
            square = F.interpolate(square, size=grid, mode="bilinear", align_corners=False)
            tokens = square.flatten(2).transpose(1, 2)
        if tokens.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"teacher gives {n} patch tokens; the student's grid is {grid}")
        return tokens

    def train(self, mode: bool = True) -> Teacher:
        super().train(mode)
        self.model.eval()  # always frozen, whatever the objective's mode
        return self
