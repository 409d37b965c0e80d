"""EVA-02: masked image modelling that regresses EVA-CLIP features (RoPE, SwiGLU, sub-LN).

Fang et al., "EVA-02: A Visual Representation for Neon Genesis", arXiv:2303.11331. The
entries are the MIM-pretrained encoders (no fine-tuning), through timm.
"""

from vitbench.contract import Supervision
from vitbench.zoo.families._common import OPENAI_MEAN, OPENAI_STD
from vitbench.zoo.families.vit import _timm_vit

_common = dict(family="eva02", supervision=Supervision.SELF, mean=OPENAI_MEAN, std=OPENAI_STD,
               patch_size=14, paper="arXiv:2303.11331 (EVA-02)", license="mit")
IN22K = "ImageNet-21k (images only); EVA-CLIP teacher"

_timm_vit("eva02_t", "eva02_tiny_patch14_224", "mim_in22k", embed_dim=192, params_m=5.50,
          data=IN22K, **_common)
_timm_vit("eva02_s", "eva02_small_patch14_224", "mim_in22k", embed_dim=384, params_m=21.62,
          data=IN22K, **_common)
_timm_vit("eva02_b", "eva02_base_patch14_224", "mim_in22k", embed_dim=768, params_m=85.76,
          data=IN22K, **_common)
_timm_vit("eva02_l", "eva02_large_patch14_224", "mim_m38m", embed_dim=1024, params_m=303.27,
          data="Merged-38M (IN-21k, CC12M, CC3M, COCO, ADE20K, Object365, OpenImages; images "
               "only); EVA-CLIP teacher", **_common)
