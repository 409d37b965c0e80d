"""The pretraining losses, as plain typed functions (and tiny modules where state is needed).

One file per family of objectives: ``contrastive`` (CLIP, SigLIP, CoCa), ``distill`` (DINO,
iBOT, DINOv2's KoLeo and Sinkhorn-Knopp), ``mim`` (MAE, BEiT, EVA) and ``vl`` (ALBEF/BLIP
image-text matching and momentum distillation). Each docstring cites the paper and its defaults.
"""

from vitbench.pretrain.losses.contrastive import (
    LogitScale,
    caption_loss,
    clip_logits,
    clip_loss,
    coca_loss,
    siglip_loss,
)
from vitbench.pretrain.losses.distill import (
    DinoCenter,
    dino_loss,
    ibot_patch_loss,
    koleo_loss,
    sinkhorn_knopp,
    teacher_temperature,
)
from vitbench.pretrain.losses.mim import beit_mim_loss, eva_feature_loss, mae_loss, patchify
from vitbench.pretrain.losses.vl import (
    itc_distill_loss,
    itm_loss,
    momentum_distill_targets,
    sample_hard_negatives,
    soft_cross_entropy,
)

__all__ = [
    "DinoCenter",
    "LogitScale",
    "beit_mim_loss",
    "caption_loss",
    "clip_logits",
    "clip_loss",
    "coca_loss",
    "dino_loss",
    "eva_feature_loss",
    "ibot_patch_loss",
    "itc_distill_loss",
    "itm_loss",
    "koleo_loss",
    "mae_loss",
    "momentum_distill_targets",
    "patchify",
    "sample_hard_negatives",
    "siglip_loss",
    "sinkhorn_knopp",
    "soft_cross_entropy",
    "teacher_temperature",
]
