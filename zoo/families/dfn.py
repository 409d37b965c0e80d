"""DFN: CLIP trained on pairs chosen by a Data Filtering Network, through open_clip.

Fang et al., "Data Filtering Networks", arXiv:2309.17425. DFN-2B is filtered from
DataComp's CommonPool-12.8B; DFN-5B is a larger web pool filtered the same way. Apple's
weights use QuickGELU (open_clip's pretrained cfg: quick_gelu=True), hence the `-quickgelu`
architectures. The DFN-5B ViT-H/14 models were trained on squashed (not cropped) images, which
their pretrained cfg keeps as resize_mode="squash".
"""

from vitbench.zoo.families._open_clip_common import open_clip_entry

_dfn = dict(family="dfn", paper="arXiv:2309.17425 (DFN)", license="apple-amlr")
DFN2B = "DFN-2B (filtered from DataComp CommonPool-12.8B)"
DFN5B = "DFN-5B"

open_clip_entry(
    "dfn_b16",
    "ViT-B-16-quickgelu",
    "dfn2b",
    hub="apple/DFN2B-CLIP-ViT-B-16",
    patch_size=16,
    embed_dim=768,
    projection_dim=512,
    params_m=86.19,
    total_m=149.62,
    data=DFN2B,
    **_dfn,
    gflops=17.56,
)
open_clip_entry(
    "dfn_l14",
    "ViT-L-14-quickgelu",
    "dfn2b",
    hub="apple/DFN2B-CLIP-ViT-L-14",
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=303.97,
    total_m=427.62,
    data=DFN2B,
    **_dfn,
    gflops=81.01,
)
open_clip_entry(
    "dfn_h14",
    "ViT-H-14-quickgelu",
    "dfn5b",
    hub="apple/DFN5B-CLIP-ViT-H-14",
    patch_size=14,
    embed_dim=1280,
    projection_dim=1024,
    params_m=632.08,
    total_m=986.11,
    resize_mode="squash",
    data=DFN5B,
    **_dfn,
    gflops=167.3,
)
open_clip_entry(
    "dfn_h14_378",
    "ViT-H-14-378-quickgelu",
    "dfn5b",
    hub="apple/DFN5B-CLIP-ViT-H-14-378",
    input_size=378,
    patch_size=14,
    embed_dim=1280,
    projection_dim=1024,
    params_m=632.68,
    total_m=986.71,
    resize_mode="squash",
    data=DFN5B,
    **_dfn,
    gflops=503.48,
)
