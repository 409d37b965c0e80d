"""NaViT: a ViT for any aspect ratio and resolution ("Patch n' Pack"), through timm's NaFlexVit.

Dehghani et al., "Patch n' Pack: NaViT, a Vision Transformer for any Aspect Ratio and
Resolution", arXiv:2307.06304. Images are not resized to a square: each keeps its aspect ratio
and becomes its own number of patches; sequences of different lengths share a batch, with
attention and pooling masked per image, and factorized, fractional position embeddings
resampled to each image's patch grid.

NaViT's own weights (JFT-4B / WebLI, JAX) were never released. timm's NaFlexVit is the
PyTorch NaViT (variable-size batches with patch coordinates and masks); navit_b16 carries its
ViT-B/16 with aspect-preserving factorized position embeddings, trained by timm with NaFlex
batches of up to 576 patches on ImageNet-1k (`e300_s576_in1k`). Eval preprocessing keeps the
aspect ratio: the largest size with at most (input_size / 16)^2 = 576 patches, sides multiples
of 16, no crop; `encode_image` takes a list of such images (see zoo/adapters/naflex.py).
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import HALF, timm_entry

timm_entry(
    "navit_b16",
    "naflexvit_base_patch16_parfac_gap",
    "e300_s576_in1k",
    family="navit",
    supervision=Supervision.FULLY,
    embed_dim=768,
    params_m=86.46,
    data="ImageNet-1k",
    paper="arXiv:2307.06304 (NaViT)",
    mean=HALF,
    std=HALF,
    input_size=384,
    crop_pct=1.0,
    patch_size=16,
    dynamic_resolution=True,
    resize_mode="patches",
    gflops=55.80,
    notes="NaViT recipe in timm's NaFlexVit (4 register tokens, average pooling, factorized "
    "aspect-preserving position embeddings); NaViT's own JFT weights are unreleased; "
    "images keep their aspect ratio within 576 patches (input_size 384 = the budget of a "
    "square image)",
)
