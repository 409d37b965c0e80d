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

# Tiny architectures to pretrain from scratch on the embedded data (no published weights):
# 4-px patches make a 32-px image an 8x8 grid, where a 16-px-patch ViT would see 2x2.
_PICO = dict(patch_size=4, img_size=32, embed_dim=64, depth=4, num_heads=4, num_classes=0,
             global_pool="avg", dynamic_img_size=True)  # any crop size (multi-crop)
_EVA02 = "EVA-02 (RoPE, SwiGLU, sub-LN)"
for _name, _arch, _kind in (("vit_pico", "vit_tiny_patch16_224", "ViT"),
                            ("eva02_pico", "eva02_tiny_patch14_224", _EVA02)):
    register(
        EncoderSpec(
            name=_name,
            family="pico",
            supervision=Supervision.NONE,
            backend="timm",
            backend_id=_arch,
            weights=WeightsSource(""),
            input_size=32,
            mean=HALF,
            std=HALF,
            crop_pct=1.0,
            patch_size=4,
            embed_dim=64,
            params_m=0.207,
            pretraining_data="none (train it: vitbench pretrain --model " + _name + ")",
            dynamic_resolution=True,
            paper=f"tiny {_kind}: 32 px, patch 4, dim 64, depth 4, 4 heads",
            license="apache-2.0",
        ),
        **_PICO,
    )
