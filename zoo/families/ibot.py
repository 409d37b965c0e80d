"""iBOT: masked image modelling with an online tokenizer (self-distillation on patch tokens), ViTs.

Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", arXiv:2111.07832. The
backbones are timm's ViT architectures (vit_small/base/large_patch16_224 without a head); the
released weights are the teachers' backbones ("backbone (t)"), which are not on the Hugging
Face hub: download `checkpoint_teacher.pth` from the links in github.com/bytedance/ibot's README
and pass it with `--weights PATH` / `pretrained=PATH` (zoo/reference/ibot.py reads its keys).
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD, fp32_mb
from vitbench.zoo.registry import register

DOWNLOADS = "https://lf3-nlp-opensource.bytetos.com/obj/nlp-opensource/archive/2022/ibot"
README = "github.com/bytedance/ibot README, Pre-Trained Models table ('Par.')"


def _head_m(dim: int) -> float:
    """Parameters (M) of the iBOT projection head stored beside the backbone in the file:
    MLP dim -> 2048 -> 2048 -> 256, then a weight-normed 256 -> 8192 layer (download size)."""
    return (dim * 2048 + 2048 * 2048 + 2048 * 256 + 256 * 8192) / 1e6


def _ibot(
    name: str,
    folder: str,
    arch: str,
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    params_m: float,
    gflops: float,
    published: float | None,
    notes: str = "",
) -> None:
    register(
        EncoderSpec(
            name=name,
            family="ibot",
            supervision=Supervision.SELF,
            backend="reference",
            backend_id=arch,
            weights=WeightsSource(
                "in1k", None, ("checkpoint_teacher.pth",), fp32_mb(params_m + _head_m(embed_dim))
            ),
            input_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            crop_pct=0.875,
            patch_size=16,
            embed_dim=embed_dim,
            params_m=params_m,
            pretraining_data="ImageNet-1k (images only)",
            paper="arXiv:2111.07832 (iBOT)",
            dynamic_resolution=True,
            license="apache-2.0",
            notes=f"teacher backbone, not on the HF hub: {DOWNLOADS}/{folder}/"
            f"checkpoint_teacher.pth{notes}",
            gflops=gflops,
            published_params_m=published,
            params_source=README if published else "",
        ),
        factory="ibot:IBotViT",
        kwargs=dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads),
    )


# iBOT's eval transform: Resize(256, bicubic) + CenterCrop(224), i.e. crop_pct 0.875.
# The README's 21M for ViT-S/16 truncates the measured 21.67M (3% off), so it is not stated.
_ibot(
    "ibot_s16",
    "vits_16",
    "vit_small_patch16_224",
    embed_dim=384,
    depth=12,
    num_heads=6,
    params_m=21.67,
    gflops=4.6,
    published=None,
    notes="; the README states 21M params",
)
_ibot(
    "ibot_b16",
    "vitb_16",
    "vit_base_patch16_224",
    embed_dim=768,
    depth=12,
    num_heads=12,
    params_m=85.8,
    gflops=17.56,
    published=85.0,
)
_ibot(
    "ibot_l16",
    "vitl_16",
    "vit_large_patch16_224",
    embed_dim=1024,
    depth=24,
    num_heads=16,
    params_m=303.3,
    gflops=61.55,
    published=307.0,
)
