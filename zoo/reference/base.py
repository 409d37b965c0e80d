"""What a reference implementation provides to the `reference` adapter.

A reference model is a torch module that encodes images into `ImageFeatures` (and texts, when
it has a text side) and knows how to read its official checkpoint: `convert` maps the official
key layout to the module's own. The mapping is documented next to each model and tested by a
round trip (official layout -> convert -> load_state_dict(strict=True)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vitbench.contract import ImageFeatures
from vitbench.errors import VitbenchError


class ReferenceModel(torch.nn.Module):
    """Base class: override `forward_image`; dual/fusion models also `forward_text`."""

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        raise NotImplementedError

    def forward_text(self, texts: Sequence[str]) -> torch.Tensor:
        raise VitbenchError(f"{type(self).__name__} has no text tower")

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official checkpoint keys -> this module's keys (identity when they already match)."""
        return state
