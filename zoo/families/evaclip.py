"""EVA-CLIP: CLIP whose image tower starts from an EVA masked-image-modelling encoder, through
open_clip.

Sun et al., "EVA-CLIP: Improved Training Techniques for CLIP at Scale", arXiv:2303.15389.
The image towers are timm EVA models (EVA-01 giant; EVA-02 with RoPE and SwiGLU) whose own
classifier layer is the projection: `pooled` is the trunk's class token before it, `projected`
after it; the resolution is fixed. The E/14 entry is EVA02-CLIP-E/14+ (the "-plus"
architecture: the same image tower with a larger text tower, trained longer); EVA01-g-14 is the
LAION-400M run.

Not here: EVA-CLIP-18B (Sun et al., arXiv:2402.04252) and EVA-CLIP-8B are not in open_clip.
"""

from vitbench.zoo.families._open_clip_common import open_clip_entry

_eva = dict(family="evaclip", tower="timm", paper="arXiv:2303.15389 (EVA-CLIP)", license="mit")
MERGED_2B = "Merged-2B (LAION-2B and COYO-700M)"

open_clip_entry(
    "evaclip_b16",
    "EVA02-B-16",
    "merged2b_s8b_b131k",
    hub="timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k",
    patch_size=16,
    embed_dim=768,
    projection_dim=512,
    params_m=86.26,
    total_m=149.69,
    data=MERGED_2B,
    **_eva,
    gflops=17.56,
)
open_clip_entry(
    "evaclip_l14",
    "EVA02-L-14",
    "merged2b_s4b_b131k",
    hub="timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k",
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=304.11,
    total_m=427.76,
    data=MERGED_2B,
    **_eva,
    gflops=81.0,
)
open_clip_entry(
    "evaclip_l14_336",
    "EVA02-L-14-336",
    "merged2b_s6b_b61k",
    hub="timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k",
    input_size=336,
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=304.43,
    total_m=428.08,
    data=MERGED_2B,
    **_eva,
    gflops=190.93,
)
open_clip_entry(
    "evaclip_g14",
    "EVA01-g-14",
    "laion400m_s11b_b41k",
    hub="timm/eva_giant_patch14_clip_224.laion400m_s11b_b41k",
    patch_size=14,
    embed_dim=1408,
    projection_dim=1024,
    params_m=1012.59,
    total_m=1136.44,
    data="LAION-400M",
    **_eva,
    gflops=267.03,
)
open_clip_entry(
    "evaclip_e14",
    "EVA02-E-14-plus",
    "laion2b_s9b_b144k",
    hub="timm/eva02_enormous_patch14_plus_clip_224.laion2b_s9b_b144k",
    patch_size=14,
    embed_dim=1792,
    projection_dim=1024,
    params_m=4350.56,
    total_m=5044.89,
    data="LAION-2B",
    **_eva,
    gflops=1132.16,
)
