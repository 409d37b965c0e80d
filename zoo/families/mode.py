"""MoDE: a mixture of CLIP data experts, one per caption cluster, ensembled per task.

Ma et al., "MoDE: CLIP Data Experts via Clustering", arXiv:2404.16030 (code: MetaCLIP's
apps/mode). mode_b16 is MoDE-4 with ViT-B/16 experts, each of `clip_b16`'s architecture
(open_clip ViT-B-16-quickgelu, as MetaCLIP trains). The model, the routing formula and the
weights-directory layout are in zoo/reference/mode.py. No MoDE weights are published:
pretrained=DIR loads a directory in that layout.

Facts are the four experts together: params_m and gflops are 4x clip_b16's image tower;
`pooled` concatenates the experts' pooled features (4 x 768), `projected` their normalised
joint-space embeddings (4 x 512, scaled by 1/2 so cosines average the experts').
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import OPENAI_MEAN, OPENAI_STD, fp32_mb
from vitbench.zoo.registry import register

EXPERTS = ("clip_b16",) * 4

register(
    EncoderSpec(
        name="mode_b16",
        family="mode",
        supervision=Supervision.WEAKLY,
        backend="reference",
        backend_id="MoDE",
        weights=WeightsSource("", None, ("mode.json", "centres.safetensors"), fp32_mb(4 * 149.62)),
        input_size=224,
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
        patch_size=16,
        embed_dim=4 * 768,
        projection_dim=4 * 512,
        params_m=344.76,
        gflops=70.25,
        pretraining_data="MetaCLIP-curated image-text pairs, split into 4 caption clusters (one "
        "per expert)",
        paper="arXiv:2404.16030 (MoDE)",
        license="cc-by-nc-4.0",
        notes="4 ViT-B/16 CLIP experts; zero-shot classification routes by class names "
        "(model.zero_shot_logits; needs the router text model in the weights directory or "
        "class embeddings); pooled/projected concatenate the experts; no published weights",
    ),
    factory="mode:MoDE",
    kwargs={"experts": EXPERTS},
)
