"""BEiT and BEiT v2: BERT-style masked image modelling on visual tokens, through timm.

BEiT: Bao et al., "BEiT: BERT Pre-Training of Image Transformers", arXiv:2106.08254 (targets:
DALL-E dVAE tokens). BEiT v2: Peng et al., "BEiT v2: Masked Image Modeling with
Vector-Quantized Visual Tokenizers", arXiv:2208.06366 (targets: VQ-KD tokens distilled from
CLIP). Both use relative position biases, which timm resizes for other resolutions.

timm carries no pretrain-only BEiT checkpoint: every tag is the self-supervised encoder after
supervised fine-tuning with class labels, so these entries are `fully` supervised weights of a
self-supervised method (the default tags: fine-tuned on ImageNet-22k, then ImageNet-1k).
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import HALF, IMAGENET_MEAN, IMAGENET_STD
from vitbench.zoo.families.vit import _timm_vit

NOTES = (
    "self-supervised {method} pretraining, then supervised fine-tuning (class labels); "
    "timm has no pretrain-only {method} weights"
)

_beit = dict(
    tag="in22k_ft_in22k_in1k",
    family="beit",
    supervision=Supervision.FULLY,
    paper="arXiv:2106.08254 (BEiT)",
    mean=HALF,
    std=HALF,
    data="ImageNet-22k (images only, MIM on dVAE tokens), fine-tuned on ImageNet-22k "
    "then ImageNet-1k",
    notes=NOTES.format(method="BEiT"),
)
_timm_vit("beit_b16", "beit_base_patch16_224", embed_dim=768, params_m=86.53, **_beit, gflops=17.56)
_timm_vit(
    "beit_l16", "beit_large_patch16_224", embed_dim=1024, params_m=304.43, **_beit, gflops=61.55
)

_beitv2 = dict(
    tag="in1k_ft_in22k_in1k",
    family="beitv2",
    supervision=Supervision.FULLY,
    paper="arXiv:2208.06366 (BEiT v2)",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    data="ImageNet-1k (images only, MIM on VQ-KD tokens from a CLIP teacher), "
    "fine-tuned on ImageNet-22k then ImageNet-1k",
    notes=NOTES.format(method="BEiT v2"),
)
_timm_vit(
    "beitv2_b16", "beitv2_base_patch16_224", embed_dim=768, params_m=86.53, **_beitv2, gflops=17.56
)
_timm_vit(
    "beitv2_l16",
    "beitv2_large_patch16_224",
    embed_dim=1024,
    params_m=304.43,
    crop_pct=0.95,
    **_beitv2,
    gflops=61.55,
)
