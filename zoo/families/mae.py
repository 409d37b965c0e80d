"""MAE: masked autoencoders (75% random masking, pixel targets), pretrained encoder only.

He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv:2111.06377. timm carries
the official pretrained (not fine-tuned) encoders as the `mae` tags of the plain ViTs.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD
from vitbench.zoo.families.vit import _timm_vit

_common = dict(
    tag="mae",
    data="ImageNet-1k (images only)",
    paper="arXiv:2111.06377 (MAE)",
    family="mae",
    supervision=Supervision.SELF,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    license="cc-by-nc-4.0",
)

_timm_vit(
    "mae_b16",
    "vit_base_patch16_224",
    embed_dim=768,
    params_m=85.80,
    **_common,
    gflops=17.56,
    published_params_m=86,
    params_source="arXiv:2010.11929 Table 1 (ViT-Base)",
)
_timm_vit(
    "mae_l16",
    "vit_large_patch16_224",
    embed_dim=1024,
    params_m=303.30,
    **_common,
    gflops=61.55,
    published_params_m=307,
    params_source="arXiv:2010.11929 Table 1 (ViT-Large)",
)
_timm_vit(
    "mae_h14",
    "vit_huge_patch14_224",
    embed_dim=1280,
    params_m=630.77,
    patch_size=14,
    **_common,
    gflops=167.29,
    published_params_m=632,
    params_source="arXiv:2010.11929 Table 1 (ViT-Huge)",
)
