"""MAE: masked autoencoders (75% random masking, pixel targets), pretrained encoder only.

He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv:2111.06377. timm carries
the official pretrained (not fine-tuned) encoder as the `mae` tag of vit_base_patch16_224.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD
from vitbench.zoo.families.vit import _timm_vit

_timm_vit("mae_b16", "vit_base_patch16_224", "mae", embed_dim=768, params_m=85.80,
          data="ImageNet-1k (images only)", paper="arXiv:2111.06377 (MAE)", family="mae",
          supervision=Supervision.SELF, mean=IMAGENET_MEAN, std=IMAGENET_STD,
          license="cc-by-nc-4.0")
