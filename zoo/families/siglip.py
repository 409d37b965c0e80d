"""SigLIP through transformers: pairwise sigmoid image-text loss on WebLI.

Zhai et al., "Sigmoid Loss for Language Image Pre-Training", arXiv:2303.15343. Google's own
transformers conversion; its processor squashes images to 224x224 (no crop), mean/std 0.5, and
pads text to 64 tokens as in training.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import HALF, fp32_mb
from vitbench.zoo.registry import register

# google/siglip-base-patch16-224's config.json (transformers defaults are this model)
SIGLIP_B16_CONFIG = {
    "model_type": "siglip",
    "text_config": {
        "vocab_size": 32000,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 64,
    },
    "vision_config": {
        "image_size": 224,
        "patch_size": 16,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
}

register(
    EncoderSpec(
        name="siglip_b16",
        family="siglip",
        supervision=Supervision.WEAKLY,
        backend="transformers",
        backend_id="SiglipModel",
        weights=WeightsSource(
            "webli", "google/siglip-base-patch16-224", ("model.safetensors",), fp32_mb(203.16)
        ),
        input_size=224,
        mean=HALF,
        std=HALF,
        resize_mode="squash",
        patch_size=16,
        embed_dim=768,
        projection_dim=768,
        params_m=92.88,
        pretraining_data="WebLI (10B image-text pairs)",
        paper="arXiv:2303.15343 (SigLIP)",
        dynamic_resolution=True,
        license="apache-2.0",
        gflops=17.71,
    ),
    config=SIGLIP_B16_CONFIG,
    text_kwargs={"padding": "max_length", "max_length": 64},
)
