"""BEiT-3: masked data modeling on images, texts and image-text pairs with one Multiway
Transformer, then image-text contrastive (ITC) intermediate tuning.

Wang et al., "Image as a Foreign Language: BEiT Pretraining for All Vision and Vision-Language
Tasks", arXiv:2208.10442; microsoft/unilm beit3/ on torchscale. The entries are the released
`BEiT3-base-itc` / `BEiT3-large-itc` checkpoints (the README recommends them for retrieval and
vision tasks), run by the plain-torch reference in zoo/reference/beit3.py: the image side is the
vision-expert path, pooled = class token after the final norm, projected = vision_head of it.

Parameter counts: params_m is that image tower (image embedding and positions, every vision
expert, the final vision norm; vision_head excluded). The unilm README publishes 87M / 305M
for the ImageNet classifiers built from the same vision-related parameters (plus fc_norm and a
1000-class head: 85.89 + 0.77 = 86.66M, 303.55 + 1.03 = 304.57M measured), and 222M / 674M for
the whole ITC models, which measure 222.16M / 674.79M here (both experts, the 64010-token text
embedding, both heads). The checkpoints are on GitHub releases (addf400/files), not on the
Hugging Face hub. Text needs the official sentencepiece model, beit3.spm.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import HALF, fp32_mb
from vitbench.zoo.registry import register

_DATA = (
    "ImageNet-21k images, 160 GB text, web image-text pairs (LAION-400M, LAION-2B en, "
    "COYO-700M, CC15M); then ITC intermediate tuning"
)
_SOURCE = (
    "unilm/beit3 README, ImageNet-1k fine-tuning table (#params of the vision-only "
    "classifier, 1000-class head included)"
)


def _beit3(
    name: str,
    size: str,
    *,
    embed_dim: int,
    depth: int,
    heads: int,
    params_m: float,
    total_m: float,
    published_m: float,
    published_total_m: float,
    gflops: float,
) -> None:
    register(
        EncoderSpec(
            name=name,
            family="beit3",
            supervision=Supervision.WEAKLY,
            backend="reference",
            backend_id="BEiT3ForRetrieval",
            weights=WeightsSource(
                "itc", None, (f"beit3_{size}_itc_patch16_224.pth",), fp32_mb(total_m)
            ),
            input_size=224,
            mean=HALF,
            std=HALF,
            resize_mode="squash",
            patch_size=16,
            embed_dim=embed_dim,
            projection_dim=embed_dim,
            params_m=params_m,
            pretraining_data=_DATA,
            paper="arXiv:2208.10442 (BEiT-3)",
            dynamic_resolution=True,
            license="mit",
            gflops=gflops,
            published_params_m=published_m,
            params_source=_SOURCE,
            notes=(
                f"params_m = the vision-expert path; whole ITC model {total_m}M measured vs "
                f"{published_total_m:.0f}M published (README, BEiT3-{size}-itc); text needs "
                "beit3.spm (XLM-R sentencepiece)"
            ),
        ),
        factory="beit3:BEiT3",
        kwargs={"embed_dim": embed_dim, "depth": depth, "num_heads": heads},
    )


_beit3(
    "beit3_b16",
    "base",
    embed_dim=768,
    depth=12,
    heads=12,
    params_m=85.89,
    total_m=222.16,
    published_m=87,
    published_total_m=222,
    gflops=17.56,
)
_beit3(
    "beit3_l16",
    "large",
    embed_dim=1024,
    depth=24,
    heads=16,
    params_m=303.55,
    total_m=674.79,
    published_m=305,
    published_total_m=674,
    gflops=61.55,
)
