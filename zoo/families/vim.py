"""Vision Mamba (Vim): bidirectional selective state-space blocks over ViT-style patch tokens.

Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with Bidirectional State
Space Model", arXiv:2401.09417. No library carries it (the official code needs mamba_ssm's CUDA
kernels), so the entries run the plain-torch reference in zoo/reference/vim.py.

The weights are the "midclstok" ImageNet-1k models of the official README (class token in the
middle of the sequence, patch stride 16). The fine-tuned "+" checkpoints in the same hub repos
use patch stride 8 (another sequence length and position embedding), and are not these entries.
`pooled` is the official forward_features output: the class token after the final RMSNorm.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD
from vitbench.zoo.registry import register

_NOTES = (
    "pooled = the middle class token after the final RMSNorm (what the head reads); "
    "gflops counts projections and convolutions, not the elementwise selective scan; "
    "the official .pth also pickles its training args (argparse.Namespace), which "
    "torch.load(weights_only=True) refuses: re-save its 'model' dict as safetensors"
)


def _vim(
    name: str,
    arch: str,
    hub: str,
    filename: str,
    *,
    embed_dim: int,
    params_m: float,
    size_mb: float,
    gflops: float,
    published: float,
) -> EncoderSpec:
    return register(
        EncoderSpec(
            name=name,
            family="vim",
            supervision=Supervision.FULLY,
            backend="reference",
            backend_id=arch,
            weights=WeightsSource("midclstok_in1k", hub, (filename,), size_mb),
            input_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            embed_dim=embed_dim,
            params_m=params_m,
            pretraining_data="ImageNet-1k",
            paper="arXiv:2401.09417 (Vim)",
            patch_size=16,
            crop_pct=0.875,  # DeiT's eval transform: resize 256, crop 224, bicubic
            license="apache-2.0",
            notes=_NOTES,
            gflops=gflops,
            published_params_m=published,
            params_source="arXiv:2401.09417 Table 1; official README model table",
        ),
        factory="vim:VisionMamba",
        kwargs={"embed_dim": embed_dim, "depth": 24},
    )


_vim(
    "vim_t",
    "vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
    "hustvl/Vim-tiny-midclstok",
    "vim_t_midclstok_76p1acc.pth",
    embed_dim=192,
    params_m=7.15,
    size_mb=115,
    gflops=1.29,
    published=7.0,
)
_vim(
    "vim_s",
    "vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
    "hustvl/Vim-small-midclstok",
    "vim_s_midclstok_80p5acc.pth",
    embed_dim=384,
    params_m=25.80,
    size_mb=413,
    gflops=4.85,
    published=26.0,
)
