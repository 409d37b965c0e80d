"""Tokenize Anything via Prompting (TAP): SAM-style promptable segmentation plus region semantics.

Pan et al., "Tokenize Anything via Prompting", arXiv:2312.09128. TAP trains a promptable model
on SA-1B masks with concept targets from EVA-CLIP (5B) and region captions from Visual Genome;
its image encoder is a windowed ViT with convolutional cross-window blocks, not SAM's
architecture, so it is a reference implementation (zoo/reference/tap.py).

As for SAM, `tokens` is the 256-channel 64x64 map the promptable decoder reads and `pooled` its
mean. The official weights are whole TAP models pickled as numpy arrays (`.pkl`), which
vitbench does not unpickle: convert one once to safetensors (any key layout: `image_encoder.*`
is picked out) and pass that file.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.families._common import IMAGENET_MEAN, IMAGENET_STD, fp32_mb
from vitbench.zoo.registry import register

CONVERT = (
    "the hub file is a pickle of numpy arrays, which vitbench never unpickles (unsafe): "
    "convert it once yourself, where you trust the file, to a dict of tensors saved with "
    "safetensors.torch.save_file as model.safetensors, then --weights model.safetensors"
)

register(
    EncoderSpec(
        name="tap_l",
        family="tap",
        supervision=Supervision.FULLY,
        backend="reference",
        backend_id="tap_vit_l",
        # the file holds the whole model (encoder, prompt encoder, decoders): larger than this
        weights=WeightsSource(
            "v1_1", "BAAI/tokenize-anything", ("models/tap_vit_l_v1_1.pkl",), fp32_mb(322.16)
        ),
        input_size=1024,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_pct=1.0,
        patch_size=16,
        embed_dim=256,
        params_m=322.16,
        gflops=1351.04,
        pretraining_data="SA-1B masks with EVA-CLIP-5B concept targets (SemanticSA-1B), then "
        "Visual Genome region captions",
        paper="arXiv:2312.09128 (TAP)",
        license="apache-2.0",
        notes="v1.1 weights (v1.0 = the paper's); trained with masks and concepts; pooled/tokens "
        "are the 256-channel neck; TAP pads the long side to 1024, vitbench centre-crops; "
        f"{CONVERT}",
    ),
    factory="tap:TapImageEncoder",
    kwargs=dict(depth=24, embed_dim=1024, num_heads=16, img_size=1024, window_size=16),
)
