"""Swin Transformer: hierarchical ViT with shifted-window attention, through timm.

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
arXiv:2103.14030. Four stages from 4x4 patches (stride 4) to stride 32: `pooled` is the
normed, average-pooled last stage and `tokens` its 7x7 map, flattened (49 tokens at 224 px,
not (224/4)^2). The attention windows fix the input size: no resolution override.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import timm_entry

_common = dict(
    family="swin",
    supervision=Supervision.FULLY,
    paper="arXiv:2103.14030 (Swin)",
    patch_size=4,
    license="mit",
)
IN22K_FT = "ImageNet-22k, fine-tuned on ImageNet-1k"

timm_entry(
    "swin_t",
    "swin_tiny_patch4_window7_224",
    "ms_in1k",
    embed_dim=768,
    params_m=28.29,
    data="ImageNet-1k",
    **_common,
    gflops=4.49,
    published_params_m=28,
    params_source="arXiv:2103.14030 Table 1a (Swin-T)",
)
timm_entry(
    "swin_s",
    "swin_small_patch4_window7_224",
    "ms_in22k_ft_in1k",
    embed_dim=768,
    params_m=49.61,
    data=IN22K_FT,
    **_common,
    gflops=8.74,
    published_params_m=50,
    params_source="arXiv:2103.14030 Table 1a (Swin-S)",
)
timm_entry(
    "swin_b",
    "swin_base_patch4_window7_224",
    "ms_in22k_ft_in1k",
    embed_dim=1024,
    params_m=87.77,
    data=IN22K_FT,
    **_common,
    gflops=15.43,
    published_params_m=88,
    params_source="arXiv:2103.14030 Table 1a (Swin-B)",
)
timm_entry(
    "swin_l",
    "swin_large_patch4_window7_224",
    "ms_in22k_ft_in1k",
    embed_dim=1536,
    params_m=196.53,
    data=IN22K_FT,
    **_common,
    gflops=34.47,
    published_params_m=197,
    params_source="arXiv:2103.14030 Table 1b (Swin-L)",
)
