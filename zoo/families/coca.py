"""CoCa: contrastive captioners (contrastive + captioning losses), OpenCLIP's LAION-2B runs.

Yu et al., "CoCa: Contrastive Captioners are Image-Text Foundation Models", arXiv:2205.01917;
open_clip's implementation and weights (LAION-2B, 13B samples seen). The image tower is
open_clip's ViT with an attentional pooler (256 queries, width = the joint-space dim) in place
of class-token pooling: `pooled` is its first query after the final LayerNorm (what the
contrastive head projects), so embed_dim equals projection_dim. The `mscoco_finetuned_*` tags
(captioning fine-tunes) are reachable with tag=.
"""

from vitbench.zoo.families._open_clip_common import open_clip_entry

_coca = dict(
    family="coca",
    data="LAION-2B (English subset of LAION-5B)",
    paper="arXiv:2205.01917 (CoCa)",
    license="mit",
)

open_clip_entry(
    "coca_b32",
    "coca_ViT-B-32",
    "laion2b_s13b_b90k",
    hub="laion/CoCa-ViT-B-32-laion2B-s13B-b90k",
    patch_size=32,
    embed_dim=512,
    projection_dim=512,
    params_m=89.16,
    total_m=253.56,
    **_coca,
    gflops=4.6,
)
open_clip_entry(
    "coca_l14",
    "coca_ViT-L-14",
    "laion2b_s13b_b90k",
    hub="laion/CoCa-ViT-L-14-laion2B-s13B-b90k",
    patch_size=14,
    embed_dim=768,
    projection_dim=768,
    params_m=306.72,
    total_m=638.45,
    **_coca,
    gflops=81.82,
)
