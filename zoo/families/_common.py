"""Shared pieces of family files: normalisation statistics, weights-size arithmetic, and
`timm_entry`, the one way a timm-backed entry is registered."""

from vitbench.contract import EncoderSpec, WeightsSource
from vitbench.zoo.registry import register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # Inception-style: [-1, 1]
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def fp32_mb(params_m: float) -> float:
    """Download size of fp32 weights with `params_m` million parameters."""
    return round(params_m * 4, 0)


def timm_entry(
    name,
    arch,
    tag,
    *,
    family,
    supervision,
    embed_dim,
    params_m,
    data,
    paper,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    input_size=224,
    crop_pct=0.9,
    patch_size=None,
    dynamic_resolution=False,
    resize_mode="shortest",
    license="apache-2.0",
    notes="",
    **facts,
):
    """Register `arch.tag` from timm's hub repo `timm/arch.tag`.

    The facts (mean/std/crop_pct/input_size: timm's pretrained cfg; params_m: the model as
    timm builds it, head included; embed_dim: the width of forward_head(pre_logits=True)) are
    stated here and checked against the backend by tests/test_zoo.py.
    `patch_size` is the patch-embedding stride (None for convolutional stems); a fixed-size
    model with a patch size refuses other resolutions, one without only changes its resize.
    `facts`: gflops, published_params_m, params_source (EncoderSpec fields).
    """
    return register(
        EncoderSpec(
            name=name,
            family=family,
            supervision=supervision,
            backend="timm",
            backend_id=arch,
            weights=WeightsSource(
                tag, f"timm/{arch}.{tag}", ("model.safetensors",), fp32_mb(params_m)
            ),
            input_size=input_size,
            mean=mean,
            std=std,
            crop_pct=crop_pct,
            resize_mode=resize_mode,
            patch_size=patch_size,
            embed_dim=embed_dim,
            params_m=params_m,
            pretraining_data=data,
            paper=paper,
            dynamic_resolution=dynamic_resolution,
            license=license,
            notes=notes,
            **facts,
        )
    )
