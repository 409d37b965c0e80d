"""Supervised ViTs: ViT (original and AugReg weights), DeiT and DeiT III, through timm.

ViT: Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv:2010.11929; weights from
Steiner et al., "How to train your ViT? (AugReg)", arXiv:2106.10270, except ViT-H/14, whose only
timm weights are the original paper's ImageNet-21k checkpoint (no classifier head).
DeiT: Touvron et al., "Training data-efficient image transformers", arXiv:2012.12877.
DeiT III: Touvron et al., "DeiT III: Revenge of the ViT", arXiv:2204.07118 (ImageNet-1k only).
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import HALF, IMAGENET_MEAN, IMAGENET_STD, timm_entry

AUGREG = "arXiv:2010.11929 (ViT); weights arXiv:2106.10270 (AugReg)"
DEIT = "arXiv:2012.12877 (DeiT)"
DEIT3 = "arXiv:2204.07118 (DeiT III)"
IN21K_FT = "ImageNet-21k, fine-tuned on ImageNet-1k"


def _timm_vit(
    name,
    arch,
    tag,
    *,
    embed_dim,
    params_m,
    data,
    paper,
    mean=HALF,
    std=HALF,
    patch_size=16,
    input_size=224,
    crop_pct=0.9,
    family="vit",
    license="apache-2.0",
    supervision=Supervision.FULLY,
    **facts,
):
    """A timm ViT-style entry: other resolutions resample its position embeddings on load."""
    return timm_entry(
        name,
        arch,
        tag,
        family=family,
        supervision=supervision,
        embed_dim=embed_dim,
        params_m=params_m,
        data=data,
        paper=paper,
        mean=mean,
        std=std,
        input_size=input_size,
        crop_pct=crop_pct,
        patch_size=patch_size,
        dynamic_resolution=True,
        license=license,
        **facts,
    )


# ViT
_timm_vit(
    "vit_t16",
    "vit_tiny_patch16_224",
    "augreg_in21k_ft_in1k",
    embed_dim=192,
    params_m=5.72,
    data=IN21K_FT,
    paper=AUGREG,
    gflops=1.25,
)
_timm_vit(
    "vit_s16",
    "vit_small_patch16_224",
    "augreg_in21k_ft_in1k",
    embed_dim=384,
    params_m=22.05,
    data=IN21K_FT,
    paper=AUGREG,
    gflops=4.6,
)
_timm_vit(
    "vit_b16",
    "vit_base_patch16_224",
    "augreg2_in21k_ft_in1k",
    embed_dim=768,
    params_m=86.57,
    data=IN21K_FT,
    paper=AUGREG,
    gflops=17.56,
    published_params_m=86,
    params_source="arXiv:2010.11929 Table 1 (ViT-Base)",
)
_timm_vit(
    "vit_b32",
    "vit_base_patch32_224",
    "augreg_in21k_ft_in1k",
    embed_dim=768,
    params_m=88.22,
    data=IN21K_FT,
    paper=AUGREG,
    patch_size=32,
    gflops=4.41,
)
_timm_vit(
    "vit_l16",
    "vit_large_patch16_224",
    "augreg_in21k_ft_in1k",
    embed_dim=1024,
    params_m=304.33,
    data=IN21K_FT,
    paper=AUGREG,
    gflops=61.55,
    published_params_m=307,
    params_source="arXiv:2010.11929 Table 1 (ViT-Large)",
)
_timm_vit(
    "vit_h14",
    "vit_huge_patch14_224",
    "orig_in21k",
    embed_dim=1280,
    params_m=630.77,
    data="ImageNet-21k",
    paper="arXiv:2010.11929 (ViT; original weights)",
    patch_size=14,
    gflops=167.29,
    published_params_m=632,
    params_source="arXiv:2010.11929 Table 1 (ViT-Huge)",
)

# DeiT (no distillation token: the plain DeiT models)
_deit = dict(family="deit", data="ImageNet-1k", paper=DEIT, mean=IMAGENET_MEAN, std=IMAGENET_STD)
_timm_vit(
    "deit_t16",
    "deit_tiny_patch16_224",
    "fb_in1k",
    embed_dim=192,
    params_m=5.72,
    **_deit,
    gflops=1.25,
)
_timm_vit(
    "deit_s16",
    "deit_small_patch16_224",
    "fb_in1k",
    embed_dim=384,
    params_m=22.05,
    **_deit,
    gflops=4.6,
    published_params_m=22,
    params_source="arXiv:2012.12877 Table 1 (DeiT-S)",
)
_timm_vit(
    "deit_b16",
    "deit_base_patch16_224",
    "fb_in1k",
    embed_dim=768,
    params_m=86.57,
    **_deit,
    gflops=17.56,
    published_params_m=86,
    params_source="arXiv:2012.12877 Table 1 (DeiT-B)",
)

# DeiT III
_deit3 = dict(family="deit3", data="ImageNet-1k", paper=DEIT3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
_timm_vit(
    "deit3_s16",
    "deit3_small_patch16_224",
    "fb_in1k",
    embed_dim=384,
    params_m=22.06,
    **_deit3,
    gflops=4.6,
)
_timm_vit(
    "deit3_b16",
    "deit3_base_patch16_224",
    "fb_in1k",
    embed_dim=768,
    params_m=86.59,
    **_deit3,
    gflops=17.56,
)
_timm_vit(
    "deit3_l16",
    "deit3_large_patch16_224",
    "fb_in1k",
    embed_dim=1024,
    params_m=304.38,
    **_deit3,
    gflops=61.55,
)
