"""SigLIP and SigLIP 2 through open_clip: sigmoid image-text loss on WebLI.

SigLIP: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", arXiv:2303.15343.
SigLIP 2: Tschannen et al., "SigLIP 2: Multilingual Vision-Language Encoders with Improved
Semantic Understanding, Localization, and Dense Features", arXiv:2502.14786.
SoViT-400m (the "so400m" shape): Alabdulmohsin et al., "Getting ViT in Shape",
arXiv:2305.13035.

The image towers are timm ViTs with an attention-pooling (MAP) head and no extra projection:
the pooled output is the joint-space embedding (pooled = projected), resolution is fixed per
checkpoint (one entry per published resolution). Preprocessing squashes to size x size, mean/std
0.5. The text tokenizers are Hugging Face tokenizers fetched from the hub (timm/ViT-*-SigLIP*).
siglip_b16 (224 px) is the transformers conversion in siglip.py.
"""

from vitbench.zoo.families._common import HALF
from vitbench.zoo.families._open_clip_common import open_clip_entry

_vit = dict(tower="timm", mean=HALF, std=HALF, resize_mode="squash", license="apache-2.0")
_siglip = dict(
    family="siglip", data="WebLI (10B image-text pairs)", paper="arXiv:2303.15343 (SigLIP)", **_vit
)
_siglip2 = dict(
    family="siglip2",
    data="WebLI (10B images, multilingual)",
    paper="arXiv:2502.14786 (SigLIP 2)",
    **_vit,
)
SOVIT = "; arXiv:2305.13035 (SoViT-400m)"

# SigLIP
open_clip_entry(
    "siglip_b16_256",
    "ViT-B-16-SigLIP-256",
    "webli",
    hub="timm/ViT-B-16-SigLIP-256",
    input_size=256,
    patch_size=16,
    embed_dim=768,
    projection_dim=768,
    params_m=92.93,
    total_m=203.20,
    **_siglip,
    gflops=23.72,
)
open_clip_entry(
    "siglip_b16_384",
    "ViT-B-16-SigLIP-384",
    "webli",
    hub="timm/ViT-B-16-SigLIP-384",
    input_size=384,
    patch_size=16,
    embed_dim=768,
    projection_dim=768,
    params_m=93.18,
    total_m=203.45,
    **_siglip,
    gflops=56.75,
)
open_clip_entry(
    "siglip_b16_512",
    "ViT-B-16-SigLIP-512",
    "webli",
    hub="timm/ViT-B-16-SigLIP-512",
    input_size=512,
    patch_size=16,
    embed_dim=768,
    projection_dim=768,
    params_m=93.52,
    total_m=203.79,
    **_siglip,
    gflops=109.34,
)
open_clip_entry(
    "siglip_l16_256",
    "ViT-L-16-SigLIP-256",
    "webli",
    hub="timm/ViT-L-16-SigLIP-256",
    input_size=256,
    patch_size=16,
    embed_dim=1024,
    projection_dim=1024,
    params_m=315.96,
    total_m=652.15,
    **_siglip,
    gflops=81.83,
)
open_clip_entry(
    "siglip_l16_384",
    "ViT-L-16-SigLIP-384",
    "webli",
    hub="timm/ViT-L-16-SigLIP-384",
    input_size=384,
    patch_size=16,
    embed_dim=1024,
    projection_dim=1024,
    params_m=316.28,
    total_m=652.48,
    **_siglip,
    gflops=193.15,
)
open_clip_entry(
    "siglip_so400m14",
    "ViT-SO400M-14-SigLIP",
    "webli",
    hub="timm/ViT-SO400M-14-SigLIP",
    patch_size=14,
    embed_dim=1152,
    projection_dim=1152,
    params_m=427.68,
    total_m=877.36,
    **{**_siglip, "paper": _siglip["paper"] + SOVIT},
    gflops=110.87,
)

# SigLIP 2
open_clip_entry(
    "siglip2_b16",
    "ViT-B-16-SigLIP2",
    "webli",
    hub="timm/ViT-B-16-SigLIP2",
    patch_size=16,
    embed_dim=768,
    projection_dim=768,
    params_m=92.88,
    total_m=375.19,
    **_siglip2,
    gflops=17.95,
)
open_clip_entry(
    "siglip2_l16_256",
    "ViT-L-16-SigLIP2-256",
    "webli",
    hub="timm/ViT-L-16-SigLIP2-256",
    input_size=256,
    patch_size=16,
    embed_dim=1024,
    projection_dim=1024,
    params_m=315.96,
    total_m=881.53,
    **_siglip2,
    gflops=81.83,
)
open_clip_entry(
    "siglip2_so400m14",
    "ViT-SO400M-14-SigLIP2",
    "webli",
    hub="timm/ViT-SO400M-14-SigLIP2",
    patch_size=14,
    embed_dim=1152,
    projection_dim=1152,
    params_m=427.68,
    total_m=1135.46,
    **{**_siglip2, "paper": _siglip2["paper"] + SOVIT},
    gflops=110.87,
)
open_clip_entry(
    "siglip2_g16_256",
    "ViT-gopt-16-SigLIP2-256",
    "webli",
    hub="timm/ViT-gopt-16-SigLIP2-256",
    input_size=256,
    patch_size=16,
    embed_dim=1536,
    projection_dim=1536,
    params_m=1163.17,
    total_m=1871.39,
    **_siglip2,
    gflops=300.73,
)
