"""Segment Anything (SAM) image encoders, through timm.

Kirillov et al., "Segment Anything", arXiv:2304.02643. A plain ViT (MAE-initialised, windowed
attention with a few global blocks, relative positions) on 1024x1024 inputs, trained with its
prompt encoder and mask decoder on SA-1B masks: supervised, but by masks, not class labels.

timm's forward_features ends in SAM's neck (two convs to 256 channels, the embedding the mask
decoder reads), an NCHW 64x64 map: `tokens` is that map flattened (4096 x 256) and `pooled` its
average (256-d), not the 768/1024/1280-d ViT width. timm's preprocessing resizes the short side
and centre-crops (SAM itself resizes the long side and pads). The checkpoints do not load at
another img_size, so the entries are fixed at 1024 px.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import timm_entry

_common = dict(
    tag="sa1b",
    family="sam",
    supervision=Supervision.FULLY,
    embed_dim=256,
    input_size=1024,
    crop_pct=1.0,
    patch_size=16,
    paper="arXiv:2304.02643 (SAM)",
    data="SA-1B (11M images, 1.1B masks); ViT initialised from MAE on ImageNet-1k",
    notes="trained with segmentation masks; pooled/tokens are the 256-channel neck",
)

timm_entry(
    "sam_b",
    "samvit_base_patch16",
    params_m=89.67,
    **_common,
    gflops=486.04,
    published_params_m=91,
    params_source="arXiv:2304.02643 Fig. 13 (image encoder ViT-B)",
)
timm_entry(
    "sam_l",
    "samvit_large_patch16",
    params_m=308.28,
    **_common,
    gflops=1492.84,
    published_params_m=308,
    params_source="arXiv:2304.02643 Fig. 13 (ViT-L)",
)
timm_entry(
    "sam_h",
    "samvit_huge_patch16",
    params_m=637.03,
    **_common,
    gflops=2980.54,
    published_params_m=636,
    params_source="arXiv:2304.02643 Fig. 13 (ViT-H)",
)
