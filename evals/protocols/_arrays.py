"""Input checks shared by the protocols: features arrive as numpy arrays or torch tensors."""

from __future__ import annotations

from typing import Any

import numpy as np

from vitbench.errors import VitbenchError


def normalised_rows(x: Any, name: str) -> np.ndarray:
    """Float32 C-contiguous rows scaled to unit L2 norm (all-zero rows stay zero)."""
    if hasattr(x, "detach"):  # torch tensor, possibly on a GPU or in half precision
        x = x.detach().float().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise VitbenchError(f"{name} must be a non-empty (n, dim) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise VitbenchError(f"{name} contains NaN or inf; check the encoder's outputs")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12))
