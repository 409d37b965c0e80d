"""DINO: self-distillation with no labels (student/teacher, centring and sharpening), ViTs.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", arXiv:2104.14294.
timm carries the official pretrained backbones (teacher weights, no head) as the `dino` tags.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD
from vitbench.zoo.families.vit import _timm_vit

_common = dict(
    tag="dino",
    data="ImageNet-1k (images only)",
    paper="arXiv:2104.14294 (DINO)",
    family="dino",
    supervision=Supervision.SELF,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)

_timm_vit("dino_s16", "vit_small_patch16_224", embed_dim=384, params_m=21.67, **_common, gflops=4.6)
_timm_vit(
    "dino_s8",
    "vit_small_patch8_224",
    embed_dim=384,
    params_m=21.67,
    patch_size=8,
    **_common,
    gflops=22.41,
)
_timm_vit(
    "dino_b16",
    "vit_base_patch16_224",
    embed_dim=768,
    params_m=85.80,
    **_common,
    gflops=17.56,
    published_params_m=85,
    params_source="arXiv:2104.14294 Table 2 (ViT-B/16)",
)
_timm_vit(
    "dino_b8",
    "vit_base_patch8_224",
    embed_dim=768,
    params_m=85.81,
    patch_size=8,
    **_common,
    gflops=78.15,
    published_params_m=85,
    params_source="arXiv:2104.14294 Table 2 (ViT-B/8)",
)
