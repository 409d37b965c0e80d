"""Shared constants for family files: normalisation statistics and weights-size arithmetic."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # Inception-style: [-1, 1]
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def fp32_mb(params_m: float) -> float:
    """Download size of fp32 weights with `params_m` million parameters."""
    return round(params_m * 4, 0)
