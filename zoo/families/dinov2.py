"""DINOv2: self-distillation (DINO + iBOT + KoLeo) on LVD-142M, through timm.

Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", arXiv:2304.07193.
Native resolution 518 (37x37 patches of 14 px); the weights also run at 224.
The `_reg` entries add 4 register tokens (Darcet et al., "Vision Transformers Need Registers",
arXiv:2309.16588); like the class token they are dropped from `tokens`.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD
from vitbench.zoo.families.vit import _timm_vit

DINOV2 = "arXiv:2304.07193 (DINOv2)"
REGISTERS = "arXiv:2304.07193 (DINOv2); registers arXiv:2309.16588"
_common = dict(
    tag="lvd142m",
    data="LVD-142M (curated, unlabelled)",
    family="dinov2",
    supervision=Supervision.SELF,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    patch_size=14,
    input_size=518,
    crop_pct=1.0,
)

_timm_vit(
    "dinov2_s14",
    "vit_small_patch14_dinov2",
    embed_dim=384,
    params_m=22.06,
    paper=DINOV2,
    **_common,
    gflops=46.7,
)
_timm_vit(
    "dinov2_b14",
    "vit_base_patch14_dinov2",
    embed_dim=768,
    params_m=86.58,
    paper=DINOV2,
    **_common,
    gflops=151.57,
    published_params_m=86,
    params_source="arXiv:2304.07193 / facebookresearch/dinov2 README (ViT-B/14)",
)
_timm_vit(
    "dinov2_l14",
    "vit_large_patch14_dinov2",
    embed_dim=1024,
    params_m=304.37,
    paper=DINOV2,
    **_common,
    gflops=506.8,
    published_params_m=300,
    params_source="arXiv:2304.07193 / facebookresearch/dinov2 README (ViT-L/14)",
)
_timm_vit(
    "dinov2_g14",
    "vit_giant_patch14_dinov2",
    embed_dim=1536,
    params_m=1136.48,
    paper=DINOV2,
    **_common,
    gflops=1783.34,
)

_timm_vit(
    "dinov2_s14_reg",
    "vit_small_patch14_reg4_dinov2",
    embed_dim=384,
    params_m=22.06,
    paper=REGISTERS,
    **_common,
    gflops=46.88,
)
_timm_vit(
    "dinov2_b14_reg",
    "vit_base_patch14_reg4_dinov2",
    embed_dim=768,
    params_m=86.58,
    paper=REGISTERS,
    **_common,
    gflops=152.12,
)
_timm_vit(
    "dinov2_l14_reg",
    "vit_large_patch14_reg4_dinov2",
    embed_dim=1024,
    params_m=304.37,
    paper=REGISTERS,
    **_common,
    gflops=508.55,
)
_timm_vit(
    "dinov2_g14_reg",
    "vit_giant_patch14_reg4_dinov2",
    embed_dim=1536,
    params_m=1136.48,
    paper=REGISTERS,
    **_common,
    gflops=1789.22,
)
