"""OpenAI CLIP through open_clip: contrastive image-text pretraining on WIT-400M.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
arXiv:2103.00020. OpenAI's weights use QuickGELU: the `-quickgelu` architecture is named
explicitly so config and weights can never silently disagree.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.adapters.open_clip import CHECKPOINT_FILES
from vitbench.zoo.families._common import OPENAI_MEAN, OPENAI_STD, fp32_mb
from vitbench.zoo.registry import register

register(EncoderSpec(
    name="clip_b32", family="clip", supervision=Supervision.WEAKLY, backend="open_clip",
    backend_id="ViT-B-32-quickgelu",
    weights=WeightsSource("openai", "timm/vit_base_patch32_clip_224.openai", CHECKPOINT_FILES,
                          fp32_mb(151.28)),
    input_size=224, mean=OPENAI_MEAN, std=OPENAI_STD, crop_pct=1.0, patch_size=32,
    embed_dim=768, projection_dim=512, params_m=87.85, pretraining_data="WIT-400M (OpenAI)",
    paper="arXiv:2103.00020 (CLIP)", dynamic_resolution=True, license="mit",
))
