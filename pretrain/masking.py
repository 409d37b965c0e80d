"""Masks for masked modelling: MAE's random patches, BEiT's blocks, BERT's MLM tokens.

Every helper takes a ``torch.Generator`` so that a run (and its resume) draws the same masks.
Patch masks are ``(B, N)`` bool with True = masked, patches in row-major order.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAE_MASK_RATIO = 0.75
"""MAE (arXiv:2111.06377): 75% of the patches removed, uniformly at random."""
BEIT_MASK_RATIO = 0.4
"""BEiT (arXiv:2106.08254): ~40% masked (75 of 196 patches), blocks of >= 16 patches,
aspect ratio in [0.3, 1 / 0.3]. EVA uses the same 40% block masking."""
MLM_PROB = 0.15
"""BERT / ALBEF / BLIP: 15% of the text tokens; of those 80% [MASK], 10% random, 10% kept."""


def random_mask(
    batch: int, num_patches: int, ratio: float = MAE_MASK_RATIO, *,
    generator: torch.Generator | None = None, device: torch.device | str | None = None,
) -> Tensor:
    """MAE's per-sample random masking: exactly ``int(N * (1 - ratio))`` patches stay visible.

    Every row has the same number of visible patches, so ``x[~mask].view(B, -1, D)`` gathers
    them in patch order.
    """
    n_keep = int(num_patches * (1 - ratio))
    noise = torch.rand(batch, num_patches, generator=generator)
    keep = noise.argsort(dim=1)[:, :n_keep]
    mask = torch.ones(batch, num_patches, dtype=torch.bool)
    mask.scatter_(1, keep, False)
    return mask.to(device) if device is not None else mask


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * torch.rand((), generator=generator).item()


def _randint(lo: int, hi: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[lo, hi]`` inclusive."""
    return int(torch.randint(lo, hi + 1, (), generator=generator).item())


def sample_blocks(
    height: int, width: int, num_masked: int, *, min_patches: int = 16,
    max_patches: int | None = None, min_aspect: float = 0.3, max_aspect: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, list[tuple[int, int, int, int]]]:
    """BEiT's block-wise masking of one ``height x width`` grid.

    Repeatedly places a rectangle of random area in ``[min_patches, remaining]`` and
    log-uniform aspect ratio, keeping it only if it adds new patches without overshooting
    ``num_masked``; stops at ``num_masked`` or when ten tries in a row add nothing. So the count
    can end slightly below ``num_masked``, as in BEiT.

    Returns:
        The ``(height, width)`` bool mask and the accepted rectangles ``(top, left, h, w)``.
    """
    max_patches = num_masked if max_patches is None else max_patches
    log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
    mask = torch.zeros(height, width, dtype=torch.bool)
    blocks: list[tuple[int, int, int, int]] = []
    count = 0
    while count < num_masked:
        budget = min(num_masked - count, max_patches)
        added = 0
        for _ in range(10):
            area = _uniform(min_patches, budget, generator)
            aspect = math.exp(_uniform(*log_aspect, generator))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if not (0 < h < height and 0 < w < width):
                continue
            top, left = _randint(0, height - h, generator), _randint(0, width - w, generator)
            new = h * w - int(mask[top:top + h, left:left + w].sum())
            if 0 < new <= budget:
                mask[top:top + h, left:left + w] = True
                blocks.append((top, left, h, w))
                added = new
                break
        if added == 0:
            break
        count += added
    return mask, blocks


def block_mask(
    batch: int, grid: tuple[int, int], ratio: float = BEIT_MASK_RATIO, *,
    min_patches: int = 16, min_aspect: float = 0.3,
    generator: torch.Generator | None = None, device: torch.device | str | None = None,
) -> Tensor:
    """BEiT block-wise masks for a batch: ``(B, H * W)`` bool, about ``ratio`` masked each."""
    height, width = grid
    num_masked = int(round(ratio * height * width))
    masks = [
        sample_blocks(height, width, num_masked, min_patches=min_patches,
                      min_aspect=min_aspect, generator=generator)[0].flatten()
        for _ in range(batch)
    ]
    out = torch.stack(masks)
    return out.to(device) if device is not None else out


def mlm_mask(
    input_ids: Tensor, *, mask_token_id: int, vocab_size: int, special_mask: Tensor,
    prob: float = MLM_PROB, generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT-style masked language modelling inputs, as ALBEF and BLIP draw them.

    Args:
        input_ids: ``(B, L)`` token ids.
        special_mask: ``(B, L)`` bool, True for tokens never to mask (padding, [CLS], [SEP]).

    Returns:
        ``(masked_ids, labels)``: of the selected tokens 80% become ``mask_token_id``, 10% a
        random token and 10% stay; ``labels`` holds the original id there and -100 (ignored by
        cross-entropy) everywhere else.
    """
    shape, dev = input_ids.shape, input_ids.device
    selected = (torch.rand(shape, generator=generator) < prob).to(dev) & ~special_mask
    replace = (torch.rand(shape, generator=generator) < 0.8).to(dev) & selected
    randomise = (torch.rand(shape, generator=generator) < 0.5).to(dev) & selected & ~replace
    random_ids = torch.randint(vocab_size, shape, generator=generator).to(dev)
    masked = input_ids.clone()
    masked[replace] = mask_token_id
    masked[randomise] = random_ids[randomise]
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    return masked, labels
