"""Image-text contrastive losses: CLIP (softmax InfoNCE), SigLIP (pairwise sigmoid) and CoCa.

All three take *raw* embeddings and L2-normalise them inside, so callers cannot forget to (the
models of these papers normalise right before the loss), and take the logit scale as the
multiplier itself (``exp`` of the learnable log-parameter, as open_clip's losses do). The
learnable parameters with the papers' initial values live in :class:`LogitScale`.

These are the single-process formulas; under DDP the objective gathers the embeddings of all
ranks (with gradients) before calling them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitbench.pretrain.losses._precision import upcast

CLIP_INIT_TEMPERATURE = 0.07
"""CLIP (arXiv:2103.00020, sec. 2.5): temperature initialised to 0.07, i.e. scale 1 / 0.07."""
CLIP_MAX_SCALE = 100.0
"""CLIP: the learnable scale is clipped at 100 to keep training stable."""
SIGLIP_INIT_LOG_SCALE = math.log(10.0)
"""SigLIP (arXiv:2303.15343, sec. 3.2): t' = log 10, scale t = exp(t') = 10."""
SIGLIP_INIT_BIAS = -10.0
"""SigLIP: logit bias b = -10, so the many negatives start with a small loss."""
COCA_CAPTION_WEIGHT = 2.0
"""CoCa (arXiv:2205.01917): captioning weight 2.0 and contrastive weight 1.0 (open_clip)."""
COCA_CLIP_WEIGHT = 1.0


class LogitScale(nn.Module):
    """The learnable temperature (and SigLIP's bias) of a contrastive loss.

    Stores ``log(scale)`` so that the scale stays positive; ``forward`` returns the clamped scale
    and the bias (None without one). ``LogitScale.clip()`` and ``LogitScale.siglip()`` give the
    papers' initial values.
    """

    def __init__(
        self, init_scale: float, init_bias: float | None = None, max_scale: float = CLIP_MAX_SCALE
    ) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = None if init_bias is None else nn.Parameter(torch.tensor(float(init_bias)))
        self.max_scale = max_scale

    @classmethod
    def clip(cls) -> LogitScale:
        return cls(1.0 / CLIP_INIT_TEMPERATURE)

    @classmethod
    def siglip(cls) -> LogitScale:
        return cls(math.exp(SIGLIP_INIT_LOG_SCALE), SIGLIP_INIT_BIAS)

    def forward(self) -> tuple[Tensor, Tensor | None]:
        # clamp on the log side: the gradient stops once the cap is reached, as in CLIP
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp(), self.bias


def clip_logits(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Scaled cosine similarities, image i against text j: ``(N_image, N_text)``.

    Computed in float32 at least: with scales up to 100, bf16 similarities would be too coarse.
    """
    image, text = F.normalize(upcast(image_emb), dim=-1), F.normalize(upcast(text_emb), dim=-1)
    return logit_scale * image @ text.T


def clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE of CLIP (arXiv:2103.00020, fig. 3): pair i is the positive of row i.

    Args:
        image_emb: ``(N, D)`` image embeddings (normalised here).
        text_emb: ``(N, D)`` text embeddings of the same N pairs.
        logit_scale: the multiplier ``exp(t)``; CLIP starts at 1 / 0.07 and caps it at 100.

    Returns:
        The mean of the image->text and text->image cross-entropies.
    """
    logits = clip_logits(image_emb, text_emb, logit_scale)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def siglip_loss(
    image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float, logit_bias: Tensor | float
) -> Tensor:
    """Pairwise sigmoid loss of SigLIP (arXiv:2303.15343, algorithm 1).

    Every image-text pair is an independent binary problem (label +1 on the diagonal, -1
    elsewhere); the sum over all N^2 pairs is divided by N, as in the paper and open_clip.

    Args:
        image_emb, text_emb: ``(N, D)`` embeddings (normalised here).
        logit_scale: ``exp(t')``; SigLIP initialises t' = log 10.
        logit_bias: b; SigLIP initialises b = -10.
    """
    logits = clip_logits(image_emb, text_emb, logit_scale) + logit_bias
    n = logits.shape[0]
    labels = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / n


def caption_loss(logits: Tensor, labels: Tensor, pad_id: int = 0) -> Tensor:
    """Token cross-entropy of a captioner, ignoring padding.

    Args:
        logits: ``(N, L, V)`` next-token logits.
        labels: ``(N, L)`` target token ids; positions equal to ``pad_id`` do not count.
    """
    return F.cross_entropy(upcast(logits).permute(0, 2, 1), labels, ignore_index=pad_id)


def coca_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    caption_logits: Tensor,
    caption_labels: Tensor,
    logit_scale: Tensor | float,
    *,
    pad_id: int = 0,
    caption_weight: float = COCA_CAPTION_WEIGHT,
    clip_weight: float = COCA_CLIP_WEIGHT,
) -> tuple[Tensor, Tensor]:
    """CoCa (arXiv:2205.01917): contrastive loss plus captioning cross-entropy.

    Returns the two weighted terms separately (their sum is the training loss) so that the
    trainer can log both; weights default to open_clip's CoCa recipe (caption 2.0, clip 1.0).
    """
    contrastive = clip_weight * clip_loss(image_emb, text_emb, logit_scale)
    return contrastive, caption_weight * caption_loss(caption_logits, caption_labels, pad_id)
