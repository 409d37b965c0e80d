"""Helpers for ALBEF (arXiv:2107.07651) and BLIP (arXiv:2201.12086) pretraining.

Image-text matching (ITM) is a binary classifier on the fused encoder: one positive pair per
image, plus one *hard* negative text per image and one hard negative image per text, drawn
with probability proportional to ``softmax`` of the contrastive similarity (ALBEF sec. 3.2).
Momentum distillation (ALBEF sec. 3.3) mixes the ground truth with the momentum model's
predictions, weight alpha = 0.4, to soften the noisy web labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vitbench.pretrain.losses._precision import upcast

DISTILL_ALPHA = 0.4
"""ALBEF: weight of the momentum model's pseudo-targets (ramped up over the first epoch)."""
ALBEF_TEMPERATURE = 0.07
"""ALBEF/BLIP ITC: learnable temperature initialised to 0.07 and clamped to [0.001, 0.5]."""


@torch.no_grad()
def sample_hard_negatives(
    sim_i2t: Tensor, sim_t2i: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """One hard negative per row, sampled by similarity, never the positive.

    Args:
        sim_i2t: ``(B, B)`` image-to-text similarities (logits) of the batch, pair i = (i, i).
        sim_t2i: ``(B, B)`` text-to-image similarities.
        generator: makes the draw reproducible.

    Returns:
        ``(neg_text_for_image, neg_image_for_text)``, two ``(B,)`` index tensors.
    """
    if sim_i2t.shape[0] != sim_i2t.shape[1] or sim_t2i.shape != sim_i2t.shape:
        raise ValueError(f"expected two square (B, B) in-batch similarity matrices, got "
                         f"{tuple(sim_i2t.shape)} and {tuple(sim_t2i.shape)}")

    def draw(sim: Tensor) -> Tensor:
        # + 1e-4 keeps every other pair reachable, as ALBEF; the diagonal is the positive
        weights = F.softmax(upcast(sim), dim=1) + 1e-4
        weights.fill_diagonal_(0)
        # draw where the generator lives (a CPU generator cannot sample CUDA tensors)
        where = generator.device if generator is not None else weights.device
        picked = torch.multinomial(weights.to(where), 1, generator=generator).squeeze(1)
        return picked.to(sim.device)

    return draw(sim_i2t), draw(sim_t2i)


def itm_loss(pos_logits: Tensor, neg_logits: Tensor) -> Tensor:
    """ITM cross-entropy: ``(B, 2)`` logits of positive pairs (class 1) and ``(M, 2)`` of
    negative pairs (class 0; ALBEF uses M = 2B), averaged over all pairs."""
    logits = torch.cat([pos_logits, neg_logits])
    labels = torch.cat([torch.ones(len(pos_logits)), torch.zeros(len(neg_logits))])
    return F.cross_entropy(logits, labels.long().to(logits.device))


@torch.no_grad()
def momentum_distill_targets(momentum_logits: Tensor, alpha: float = DISTILL_ALPHA) -> Tensor:
    """ALBEF's ITC targets: ``alpha * softmax(momentum logits) + (1 - alpha) * one-hot``.

    Args:
        momentum_logits: ``(B, M)`` similarities from the momentum model; column i is the
            positive of row i (M > B when a queue of momentum features is appended).
    """
    b, m = momentum_logits.shape
    probs = F.softmax(upcast(momentum_logits), dim=1)
    one_hot = torch.eye(b, m, device=probs.device, dtype=probs.dtype)
    return alpha * probs + (1 - alpha) * one_hot


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """``-sum_k target_k log softmax(logits)_k`` averaged over rows (targets are constants)."""
    return -(targets.detach() * F.log_softmax(upcast(logits), dim=-1)).sum(-1).mean()


def itc_distill_loss(
    sim_i2t: Tensor,
    sim_t2i: Tensor,
    sim_i2t_m: Tensor,
    sim_t2i_m: Tensor,
    alpha: float = DISTILL_ALPHA,
) -> Tensor:
    """ALBEF's image-text contrastive loss with momentum distillation.

    Args:
        sim_i2t, sim_t2i: student similarities divided by the temperature, ``(B, M)``.
        sim_i2t_m, sim_t2i_m: the momentum model's, same shapes. ``alpha=0`` gives plain ITC.
    """
    i2t = soft_cross_entropy(sim_i2t, momentum_distill_targets(sim_i2t_m, alpha))
    t2i = soft_cross_entropy(sim_t2i, momentum_distill_targets(sim_t2i_m, alpha))
    return (i2t + t2i) / 2
