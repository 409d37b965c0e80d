"""OpenAI CLIP through open_clip: contrastive image-text pretraining on WIT-400M.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
arXiv:2103.00020. OpenAI's weights use QuickGELU: the `-quickgelu` architecture is named
explicitly so config and weights can never silently disagree.

clip_rn50 is the ResNet-50 variant (OpenAI's ModifiedResNet: attention-pooling head, whose
output is already the joint-space embedding); the ViTs pool the class token.
"""

from vitbench.zoo.families._open_clip_common import open_clip_entry

_openai = dict(
    family="clip", data="WIT-400M (OpenAI)", paper="arXiv:2103.00020 (CLIP)", license="mit"
)

open_clip_entry(
    "clip_rn50",
    "RN50-quickgelu",
    "openai",
    hub="timm/resnet50_clip.openai",
    tower="resnet",
    projection_dim=1024,
    params_m=38.32,
    total_m=102.01,
    **_openai,
    gflops=6.11,
)
open_clip_entry(
    "clip_b32",
    "ViT-B-32-quickgelu",
    "openai",
    hub="timm/vit_base_patch32_clip_224.openai",
    patch_size=32,
    embed_dim=768,
    projection_dim=512,
    params_m=87.85,
    total_m=151.28,
    **_openai,
    gflops=4.41,
)
open_clip_entry(
    "clip_b16",
    "ViT-B-16-quickgelu",
    "openai",
    hub="timm/vit_base_patch16_clip_224.openai",
    patch_size=16,
    embed_dim=768,
    projection_dim=512,
    params_m=86.19,
    total_m=149.62,
    **_openai,
    gflops=17.56,
)
open_clip_entry(
    "clip_l14",
    "ViT-L-14-quickgelu",
    "openai",
    hub="timm/vit_large_patch14_clip_224.openai",
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=303.97,
    total_m=427.62,
    **_openai,
    gflops=81.01,
)
open_clip_entry(
    "clip_l14_336",
    "ViT-L-14-336-quickgelu",
    "openai",
    hub="timm/vit_large_patch14_clip_336.openai",
    input_size=336,
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=304.29,
    total_m=427.94,
    **_openai,
    gflops=190.96,
)
