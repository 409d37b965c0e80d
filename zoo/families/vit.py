"""Supervised ViTs: ViT (AugReg weights) and DeiT, through timm.

ViT: Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv:2010.11929; weights from
Steiner et al., "How to train your ViT? (AugReg)", arXiv:2106.10270.
DeiT: Touvron et al., "Training data-efficient image transformers", arXiv:2012.12877.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import HALF, IMAGENET_MEAN, IMAGENET_STD, fp32_mb
from vitbench.zoo.registry import register

AUGREG = "arXiv:2010.11929 (ViT); weights arXiv:2106.10270 (AugReg)"


def _timm_vit(name, arch, tag, *, embed_dim, params_m, data, paper, mean=HALF, std=HALF,
              patch_size=16, input_size=224, crop_pct=0.9, family="vit", license="apache-2.0",
              supervision=Supervision.FULLY):
    return register(EncoderSpec(
        name=name, family=family, supervision=supervision, backend="timm", backend_id=arch,
        weights=WeightsSource(tag, f"timm/{arch}.{tag}", ("model.safetensors",),
                              fp32_mb(params_m)),
        input_size=input_size, mean=mean, std=std, crop_pct=crop_pct, patch_size=patch_size,
        embed_dim=embed_dim, params_m=params_m, pretraining_data=data, paper=paper,
        dynamic_resolution=True, license=license,
    ))


_timm_vit("vit_s16", "vit_small_patch16_224", "augreg_in21k_ft_in1k", embed_dim=384,
          params_m=22.05, data="ImageNet-21k, fine-tuned on ImageNet-1k", paper=AUGREG)
_timm_vit("vit_b16", "vit_base_patch16_224", "augreg2_in21k_ft_in1k", embed_dim=768,
          params_m=86.57, data="ImageNet-21k, fine-tuned on ImageNet-1k", paper=AUGREG)
_timm_vit("deit_s16", "deit_small_patch16_224", "fb_in1k", embed_dim=384, params_m=22.05,
          data="ImageNet-1k", paper="arXiv:2012.12877 (DeiT)", family="deit",
          mean=IMAGENET_MEAN, std=IMAGENET_STD)
