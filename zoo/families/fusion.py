"""Fusion encoders: image-text models whose text side can also attend to the image (ITM).

ALBEF (Li et al., arXiv:2107.07651): a ViT-B/16 image encoder, BERT's first 6 layers as the
text encoder, its last 6 (with cross-attention to the image tokens) as the fusion encoder.
VLMo (Bao et al., arXiv:2111.02358): one multiway transformer with shared self-attention and
per-modality feed-forward experts.

Both are reference implementations (zoo/reference/albef.py, vlmo.py): `pooled` is the image
class token after the final norm, `projected` its (un-normalised) ITC projection, and
`encode_text` the text encoder's ITC embedding; `model.itm_scores(pixels, texts)` gives the
fusion path's match probability for re-ranking. Their weights are released as GitHub /
cloud-storage files, not on the Hugging Face hub: pass the file (or a directory holding it and
the bert-base-uncased tokenizer files) as the weights path.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import HALF, OPENAI_MEAN, OPENAI_STD
from vitbench.zoo.registry import register

register(
    EncoderSpec(
        name="albef_b16",
        family="albef",
        supervision=Supervision.WEAKLY,
        backend="reference",
        backend_id="albef:ALBEF",
        # ALBEF.pth carries the model twice (momentum copy) plus two 65,536 x 256 feature queues
        weights=WeightsSource("pt14m", None, ("ALBEF.pth",), 2000.0),
        input_size=256,
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
        resize_mode="squash",
        interpolation="bicubic",
        patch_size=16,
        embed_dim=768,
        projection_dim=256,
        params_m=85.84,
        dynamic_resolution=True,
        gflops=23.2,
        pretraining_data="14M image-text pairs (CC3M, CC12M, SBU, COCO, Visual Genome)",
        paper="arXiv:2107.07651 (ALBEF)",
        license="bsd-3-clause",
        published_params_m=85.8,
        params_source="arXiv:2107.07651 Sec. 3.5: ViT-B/16 with 85.8M parameters (224 px; "
        "+0.05M position embeddings at 256); BERT-base with cross-attention 123.7M",
        notes="ALBEF.pth from storage.googleapis.com/sfr-pcl-data-research/ALBEF/ (the retrieval "
        "fine-tunes mscoco.pth / flickr30k.pth load too, at resolution=384); text is "
        "normalised as ALBEF's pre_caption does, 30 tokens at most",
    ),
    factory="albef:ALBEF",
    kwargs={},
)

register(
    EncoderSpec(
        name="vlmo_b16",
        family="vlmo",
        supervision=Supervision.WEAKLY,
        backend="reference",
        backend_id="vlmo:VLMo",
        weights=WeightsSource("pt4m", None, ("vlmo_base_patch16_224.pt",), 800.0),
        input_size=224,
        mean=HALF,
        std=HALF,
        resize_mode="squash",
        interpolation="bicubic",
        patch_size=16,
        embed_dim=768,
        projection_dim=768,
        params_m=85.82,
        gflops=17.56,
        pretraining_data="4M image-text pairs (CC3M, SBU, COCO, Visual Genome), after BEiT "
        "ImageNet and text-only Wikipedia/BookCorpus stages",
        paper="arXiv:2111.02358 (VLMo)",
        license="mit",
        notes="vlmo_base_patch16_224.pt from github.com/wenhui0924/vlmo_ckpts releases; the whole "
        "model has 175M parameters (official README); params_m counts the image path "
        "(shared attention, V-FFNs, relative position bias table; not the ITC projection); "
        "texts are padded to 40 tokens",
    ),
    factory="vlmo:VLMo",
    kwargs={},
)
