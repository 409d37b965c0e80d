"""BLIP: bootstrapped language-image pretraining (ITC + ITM + captioning losses, CapFilt data),
here its COCO-retrieval fine-tunes.

Li et al., "BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language
Understanding and Generation", arXiv:2201.12086; salesforce/BLIP. transformers carries the
model (BlipForImageTextRetrieval; hub repos Salesforce/blip-itm-{base,large}-coco), wrapped by
zoo/reference/blip.py so the entry gives ImageFeatures, ITC text embeddings and ITM scores, and
also loads the official model_*_retrieval_coco.pth checkpoints.

The configs are those repos' config.json (which leave most fields at transformers' defaults;
the vision initializer_range is set to theirs, 0.02). transformers' ViT LayerNorm eps is 1e-5
where the official vit.py uses 1e-6; the hub weights run with 1e-5, and so do these entries.
Preprocessing is BlipImageProcessor's (and the official eval transform): squash to 384 px,
bicubic, OpenAI CLIP mean/std. params_m = the ViT (vision_proj excluded).
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import OPENAI_MEAN, OPENAI_STD, fp32_mb
from vitbench.zoo.registry import register

ENC_TOKEN_ID = 30523  # bert-base-uncased (30522) + [DEC] + [ENC], as BLIP's init_tokenizer adds
_DATA = (
    "129M images (COCO, VG, CC3M, CC12M, SBU, LAION-115M; CapFilt captions), "
    "fine-tuned on COCO retrieval (Karpathy train)"
)
_SOURCE = (
    "ViT paper (arXiv:2010.11929) Table 1, ViT-Base 86M / ViT-Large 307M: BLIP's image "
    "encoders are ViT-B/16 and ViT-L/16 (BLIP Sec. 3.1); BLIP publishes no count"
)


def blip_config(width: int, depth: int, heads: int, mlp: int) -> dict:
    """BlipConfig dict of Salesforce/blip-itm-*-coco: ViT-{B,L}/16 at 384 px, BERT-base text."""
    return {
        "vision_config": {
            "hidden_size": width,
            "intermediate_size": mlp,
            "num_hidden_layers": depth,
            "num_attention_heads": heads,
            "image_size": 384,
            "patch_size": 16,
            "initializer_range": 0.02,
        },
        "text_config": {
            "vocab_size": 30524,
            "hidden_size": 768,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "intermediate_size": 3072,
            "encoder_hidden_size": width,
        },
        "image_text_hidden_size": 256,
        "projection_dim": 512,
    }


def _blip(
    name: str,
    size: str,
    config: dict,
    *,
    embed_dim: int,
    params_m: float,
    total_m: float,
    published_m: float,
    gflops: float,
) -> None:
    register(
        EncoderSpec(
            name=name,
            family="blip",
            supervision=Supervision.WEAKLY,
            backend="reference",
            backend_id="BlipForImageTextRetrieval",
            weights=WeightsSource(
                "coco",
                f"Salesforce/blip-itm-{size}-coco",
                ("model.safetensors", "pytorch_model.bin"),
                fp32_mb(total_m),
            ),
            input_size=384,
            mean=OPENAI_MEAN,
            std=OPENAI_STD,
            resize_mode="squash",
            patch_size=16,
            embed_dim=embed_dim,
            projection_dim=256,
            params_m=params_m,
            pretraining_data=_DATA,
            paper="arXiv:2201.12086 (BLIP)",
            dynamic_resolution=True,
            license="bsd-3-clause",
            gflops=gflops,
            published_params_m=published_m,
            params_source=_SOURCE,
            notes=(
                f"whole retrieval model {total_m}M measured (ViT, BERT text encoder with "
                "cross-attention, ITC projections, ITM head); official checkpoint "
                f"model_{size}_retrieval_coco.pth loads through convert"
            ),
        ),
        factory="blip:BlipRetrieval",
        kwargs={"config": config, "enc_token_id": ENC_TOKEN_ID},
    )


_blip(
    "blip_b16",
    "base",
    blip_config(768, 12, 12, 3072),
    embed_dim=768,
    params_m=86.09,
    total_m=223.74,
    published_m=86,
    gflops=55.48,
)
_blip(
    "blip_l16",
    "large",
    blip_config(1024, 24, 16, 4096),
    embed_dim=1024,
    params_m=303.69,
    total_m=446.13,
    published_m=307,
    gflops=191.07,
)
