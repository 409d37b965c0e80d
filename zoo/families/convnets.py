"""ConvNeXt and the small (~4.5 GFLOPs) backbones of the backbone comparison table, through timm.

ConvNeXt: Liu et al., "A ConvNet for the 2020s", arXiv:2201.03545.
InceptionNeXt: Yu et al., "InceptionNeXt: When Inception Meets ConvNeXt", arXiv:2303.16900.
FocalNet: Yang et al., "Focal Modulation Networks", arXiv:2203.11926 (the table's FocalNet-T,
82.3% top-1, is the large-receptive-field `lrf` variant).
MaxViT: Tu et al., "MaxViT: Multi-Axis Vision Transformer", arXiv:2204.01697.
(The table's DeiT-S and Swin-T rows are deit_s16 and swin_t.)

All four end in a stride-32 feature map: `tokens` is that 7x7 map flattened (49 tokens at 224 px)
and `pooled` is timm's pre-logits. For InceptionNeXt that is the 2304-d hidden layer of its MLP
head (embed_dim 2304, not the 768 channels of the map); for MaxViT the 512-d tanh pre-logits
layer. The convolutional stems have no patch size: a resolution override only changes the
resize, which MaxViT (windows of 7 on a 7x7 grid) does not accept.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import timm_entry

IN1K = "ImageNet-1k"
_convnext = dict(
    family="convnext",
    supervision=Supervision.FULLY,
    crop_pct=0.875,
    paper="arXiv:2201.03545 (ConvNeXt)",
)

timm_entry(
    "convnext_t",
    "convnext_tiny",
    "fb_in1k",
    embed_dim=768,
    params_m=28.59,
    data=IN1K,
    **_convnext,
    gflops=4.45,
)
timm_entry(
    "convnext_b",
    "convnext_base",
    "fb_in22k_ft_in1k",
    embed_dim=1024,
    params_m=88.59,
    data="ImageNet-22k, fine-tuned on ImageNet-1k",
    **_convnext,
    gflops=15.35,
    published_params_m=89,
    params_source="arXiv:2201.03545 Table 1 (ConvNeXt-B)",
)

timm_entry(
    "inceptionnext_t",
    "inception_next_tiny",
    "sail_in1k",
    embed_dim=2304,
    params_m=28.06,
    crop_pct=0.875,
    data=IN1K,
    family="inceptionnext",
    supervision=Supervision.FULLY,
    paper="arXiv:2303.16900 (InceptionNeXt)",
    gflops=4.19,
    published_params_m=28,
    params_source="arXiv:2303.16900 Table 2 (InceptionNeXt-T)",
)
timm_entry(
    "focalnet_t",
    "focalnet_tiny_lrf",
    "ms_in1k",
    embed_dim=768,
    params_m=28.65,
    data=IN1K,
    family="focalnet",
    supervision=Supervision.FULLY,
    paper="arXiv:2203.11926 (FocalNet)",
    license="mit",
    gflops=4.47,
    published_params_m=28.6,
    params_source="arXiv:2203.11926 Table 1 (FocalNet-T, LRF)",
)
timm_entry(
    "maxvit_t",
    "maxvit_tiny_tf_224",
    "in1k",
    embed_dim=512,
    params_m=30.92,
    crop_pct=0.95,
    data=IN1K,
    family="maxvit",
    supervision=Supervision.FULLY,
    paper="arXiv:2204.01697 (MaxViT)",
    gflops=5.55,
    published_params_m=31,
    params_source="arXiv:2204.01697 Table 2 (MaxViT-T)",
)
