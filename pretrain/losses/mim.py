"""Masked image modelling losses: MAE (pixels), BEiT (visual tokens), EVA (teacher features).

All three score only the masked patches: the visible ones are given to the encoder, so
predicting them would teach nothing. Masks are ``(B, N)`` bool, True = masked; see
``vitbench.pretrain.masking`` for how they are drawn.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from vitbench.pretrain.losses._precision import upcast


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, N, p*p*C)``, patches row-major, pixels (p, q, c) as MAE."""
    b, c, h, w = images.shape
    gh, gw = h // patch_size, w // patch_size
    x = images.reshape(b, c, gh, patch_size, gw, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch_size * patch_size * c)


def mae_loss(pred: Tensor, target_patches: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """MAE reconstruction loss (arXiv:2111.06377, sec. 3; 75% masking by default).

    Mean squared error per patch, averaged over masked patches only. With ``norm_pix`` the
    target is each patch normalised by its own mean and (unbiased) variance, as in the
    official code, which the paper shows gives better representations.

    Args:
        pred: ``(B, N, P)`` decoder predictions for every patch.
        target_patches: ``(B, N, P)`` pixels from :func:`patchify`.
        mask: ``(B, N)`` bool, True where the patch was removed.
    """
    pred, target = upcast(pred), upcast(target_patches)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum()


def beit_mim_loss(logits: Tensor, token_ids: Tensor, mask: Tensor) -> Tensor:
    """BEiT's masked image modelling (arXiv:2106.08254, eq. 1; ~40% block masking).

    Cross-entropy between the predicted visual-token logits and the tokenizer's ids, averaged
    over all masked patches of the batch.

    Args:
        logits: ``(B, N, V)`` predictions for every patch.
        token_ids: ``(B, N)`` visual token ids of the unmasked image (dVAE / VQ-KD tokenizer).
        mask: ``(B, N)`` bool, True where the patch was masked.
    """
    return F.cross_entropy(upcast(logits[mask]), token_ids[mask])


def eva_feature_loss(pred: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """EVA's feature regression (arXiv:2211.07636 sec. 2; EVA-02 arXiv:2303.11331).

    Negative cosine similarity between the student's predictions and the frozen image-text
    teacher's patch features, averaged over masked patches (EVA masks 40% block-wise).

    Args:
        pred: ``(B, N, D)`` student predictions (after its projection to the teacher width).
        teacher: ``(B, N, D)`` teacher features of the unmasked image (a constant).
        mask: ``(B, N)`` bool, True where the patch was masked.

    ``1 - cos`` would differ by a constant only: same gradients.
    """
    cos = F.cosine_similarity(upcast(pred[mask]), upcast(teacher[mask].detach()), dim=-1)
    return -cos.mean()
