"""Baselines with nothing learned: raw pixels, and the tiny ViT the tests run on.

Random weights of any entry are a baseline too (`--weights random`).
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import HALF
from vitbench.zoo.registry import register

register(
    EncoderSpec(
        name="pixels",
        family="pixels",
        supervision=Supervision.NONE,
        backend="pixels",
        backend_id="pixels",
        weights=WeightsSource("none"),
        input_size=32,
        mean=HALF,
        std=HALF,
        patch_size=4,
        embed_dim=3 * 32 * 32,
        params_m=0.0,
        pretraining_data="none",
        paper="raw-pixel baseline",
        crop_pct=1.0,
        notes="pooled = the normalised image flattened (3*r*r dims at resolution r); "
        "tokens = 4x4 pixel patches",
    )
)

register(
    EncoderSpec(
        name="test_vit",
        family="vit",
        supervision=Supervision.FULLY,
        backend="timm",
        backend_id="test_vit",
        weights=WeightsSource("r160_in1k", "timm/test_vit.r160_in1k", ("model.safetensors",), 1.5),
        input_size=160,
        mean=HALF,
        std=HALF,
        crop_pct=0.95,
        patch_size=16,
        embed_dim=64,
        params_m=0.37,
        pretraining_data="ImageNet-1k",
        dynamic_resolution=True,
        paper="timm test model (tiny ViT: dim 64)",
        license="apache-2.0",
        gflops=0.04,
    )
)
