"""Shared numerics of the losses."""

from __future__ import annotations

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """fp16/bf16 -> float32 for softmax, log and exp (AMP); float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
