"""MetaCLIP: CLIP trained on metadata-curated CommonCrawl (MetaCLIP 2.5B), through open_clip.

Xu et al., "Demystifying CLIP Data", arXiv:2309.16671. The `metaclip_fullcc` weights (the
2.5B-pair "full CommonCrawl" curation) were trained with QuickGELU, as open_clip's pretrained
cfg says (quick_gelu=True): the `-quickgelu` architectures are named explicitly, because the
plain names build a GELU model that loads these weights without complaint and computes other
features.
"""

from vitbench.zoo.families._open_clip_common import open_clip_entry

_metaclip = dict(
    family="metaclip",
    data="MetaCLIP 2.5B (curated CommonCrawl)",
    paper="arXiv:2309.16671 (MetaCLIP)",
    license="cc-by-nc-4.0",
)

open_clip_entry(
    "metaclip_b32",
    "ViT-B-32-quickgelu",
    "metaclip_fullcc",
    hub="timm/vit_base_patch32_clip_224.metaclip_2pt5b",
    patch_size=32,
    embed_dim=768,
    projection_dim=512,
    params_m=87.85,
    total_m=151.28,
    **_metaclip,
    gflops=4.41,
)
open_clip_entry(
    "metaclip_b16",
    "ViT-B-16-quickgelu",
    "metaclip_fullcc",
    hub="timm/vit_base_patch16_clip_224.metaclip_2pt5b",
    patch_size=16,
    embed_dim=768,
    projection_dim=512,
    params_m=86.19,
    total_m=149.62,
    **_metaclip,
    gflops=17.56,
)
open_clip_entry(
    "metaclip_l14",
    "ViT-L-14-quickgelu",
    "metaclip_fullcc",
    hub="timm/vit_large_patch14_clip_224.metaclip_2pt5b",
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=303.97,
    total_m=427.62,
    **_metaclip,
    gflops=81.01,
)
open_clip_entry(
    "metaclip_h14",
    "ViT-H-14-quickgelu",
    "metaclip_fullcc",
    hub="timm/vit_huge_patch14_clip_224.metaclip_2pt5b",
    patch_size=14,
    embed_dim=1280,
    projection_dim=1024,
    params_m=632.08,
    total_m=986.11,
    **_metaclip,
    gflops=167.3,
)
