"""DINOv2: self-distillation (DINO + iBOT + KoLeo) on LVD-142M, through timm.

Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", arXiv:2304.07193.
Native resolution 518 (37x37 patches of 14 px); the weights also run at 224.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD
from vitbench.zoo.families.vit import _timm_vit

DINOV2 = "arXiv:2304.07193 (DINOv2)"
_common = dict(tag="lvd142m", data="LVD-142M (curated, unlabelled)", paper=DINOV2,
               family="dinov2", supervision=Supervision.SELF, mean=IMAGENET_MEAN,
               std=IMAGENET_STD, patch_size=14, input_size=518, crop_pct=1.0)

_timm_vit("dinov2_s14", "vit_small_patch14_dinov2", embed_dim=384, params_m=22.06, **_common)
_timm_vit("dinov2_b14", "vit_base_patch14_dinov2", embed_dim=768, params_m=86.58, **_common)
