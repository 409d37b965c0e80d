"""OpenCLIP: CLIP reproduced at scale on LAION-2B, through open_clip.

Cherti et al., "Reproducible scaling laws for contrastive language-image learning",
arXiv:2212.07143; data: Schuhmann et al., "LAION-5B", arXiv:2210.08402 (LAION-2B is its
English subset). Standard GELU (no `-quickgelu`). Each entry is the LAION-2B run open_clip
lists last for its architecture (ViT-g/14: the longer s34B run, not s12B). ViT-L/14's weights
were trained with mean/std 0.5, as their pretrained cfg says.
"""

from vitbench.zoo.families._common import HALF
from vitbench.zoo.families._open_clip_common import open_clip_entry

_laion = dict(
    family="openclip",
    data="LAION-2B (English subset of LAION-5B)",
    paper="arXiv:2212.07143 (OpenCLIP scaling laws)",
    license="mit",
)

open_clip_entry(
    "openclip_b32",
    "ViT-B-32",
    "laion2b_s34b_b79k",
    hub="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    patch_size=32,
    embed_dim=768,
    projection_dim=512,
    params_m=87.85,
    total_m=151.28,
    **_laion,
    gflops=4.41,
)
open_clip_entry(
    "openclip_b16",
    "ViT-B-16",
    "laion2b_s34b_b88k",
    hub="laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
    patch_size=16,
    embed_dim=768,
    projection_dim=512,
    params_m=86.19,
    total_m=149.62,
    **_laion,
    gflops=17.56,
)
open_clip_entry(
    "openclip_l14",
    "ViT-L-14",
    "laion2b_s32b_b82k",
    hub="laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=303.97,
    total_m=427.62,
    mean=HALF,
    std=HALF,
    **_laion,
    gflops=81.01,
)
open_clip_entry(
    "openclip_h14",
    "ViT-H-14",
    "laion2b_s32b_b79k",
    hub="laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    patch_size=14,
    embed_dim=1280,
    projection_dim=1024,
    params_m=632.08,
    total_m=986.11,
    **_laion,
    gflops=167.3,
)
open_clip_entry(
    "openclip_g14",
    "ViT-g-14",
    "laion2b_s34b_b88k",
    hub="laion/CLIP-ViT-g-14-laion2B-s34B-b88K",
    patch_size=14,
    embed_dim=1408,
    projection_dim=1024,
    params_m=1012.65,
    total_m=1366.68,
    **_laion,
    gflops=267.03,
    published_params_m=1011,
    params_source="arXiv:2106.04560 Table 2 (ViT-g/14)",
)
open_clip_entry(
    "openclip_bigg14",
    "ViT-bigG-14",
    "laion2b_s39b_b160k",
    hub="laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    patch_size=14,
    embed_dim=1664,
    projection_dim=1280,
    params_m=1844.91,
    total_m=2539.57,
    **_laion,
    gflops=483.75,
)
