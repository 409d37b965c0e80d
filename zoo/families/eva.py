"""EVA-01 and EVA-02: masked image modelling that regresses CLIP features, through timm.

EVA-01: Fang et al., "EVA: Exploring the Limits of Masked Visual Representation Learning at
Scale", arXiv:2211.07636 (ViT-g/14, 1B parameters, reconstructs OpenAI CLIP-L/14 features).
EVA-02: Fang et al., "EVA-02: A Visual Representation for Neon Genesis", arXiv:2303.11331
(RoPE, SwiGLU, sub-LN; EVA-CLIP teacher). The EVA-02 entries are the MIM-pretrained encoders
(no fine-tuning).

timm has no pretrain-only EVA-01 checkpoint. eva_g14 is the paper's own encoder (MIM on
Merged-30M) after the paper's supervised fine-tuning (ImageNet-21k, then ImageNet-1k at 336 px);
the other eva_giant tags are the EVA-CLIP image tower (`clip_ft_in1k`: a contrastive model
fine-tuned on ImageNet-1k), a different model. Its eval preprocessing squashes to 336x336.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD, OPENAI_MEAN, OPENAI_STD
from vitbench.zoo.families.vit import _timm_vit

# EVA-02
_common = dict(
    family="eva02",
    supervision=Supervision.SELF,
    mean=OPENAI_MEAN,
    std=OPENAI_STD,
    patch_size=14,
    paper="arXiv:2303.11331 (EVA-02)",
    license="mit",
)
IN22K = "ImageNet-21k (images only); EVA-CLIP teacher"

_timm_vit(
    "eva02_t",
    "eva02_tiny_patch14_224",
    "mim_in22k",
    embed_dim=192,
    params_m=5.50,
    data=IN22K,
    **_common,
    gflops=1.7,
    published_params_m=6,
    params_source="arXiv:2303.11331 Table 3 (EVA-02-Ti)",
)
_timm_vit(
    "eva02_s",
    "eva02_small_patch14_224",
    "mim_in22k",
    embed_dim=384,
    params_m=21.62,
    data=IN22K,
    **_common,
    gflops=6.12,
    published_params_m=22,
    params_source="arXiv:2303.11331 Table 3 (EVA-02-S)",
)
_timm_vit(
    "eva02_b",
    "eva02_base_patch14_224",
    "mim_in22k",
    embed_dim=768,
    params_m=85.76,
    data=IN22K,
    **_common,
    gflops=23.16,
    published_params_m=86,
    params_source="arXiv:2303.11331 Table 3 (EVA-02-B)",
)
_timm_vit(
    "eva02_l",
    "eva02_large_patch14_224",
    "mim_m38m",
    embed_dim=1024,
    params_m=303.27,
    data="Merged-38M (IN-21k, CC12M, CC3M, COCO, ADE20K, Object365, OpenImages; images "
    "only); EVA-CLIP teacher",
    **_common,
    gflops=81.0,
    published_params_m=304,
    params_source="arXiv:2303.11331 Table 3 (EVA-02-L)",
)

# EVA-01
_timm_vit(
    "eva_g14",
    "eva_giant_patch14_336",
    "m30m_ft_in22k_in1k",
    embed_dim=1408,
    params_m=1013.01,
    family="eva",
    supervision=Supervision.FULLY,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    patch_size=14,
    input_size=336,
    crop_pct=1.0,
    resize_mode="squash",
    paper="arXiv:2211.07636 (EVA)",
    license="mit",
    data="Merged-30M (IN-21k, CC12M, CC3M, Object365, COCO, ADE20K; images only, MIM on "
    "OpenAI CLIP-L/14 features), fine-tuned on ImageNet-21k then ImageNet-1k",
    notes="self-supervised EVA pretraining, then supervised fine-tuning (class labels); "
    "timm has no pretrain-only EVA-01 weights",
    gflops=620.32,
)
