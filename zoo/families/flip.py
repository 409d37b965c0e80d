"""FLIP: CLIP trained on a random half of the image patches ("Scaling Language-Image
Pre-training via Masking").

Li et al., "Scaling Language-Image Pre-training via Masking", arXiv:2212.00794. Dropping 50% of
the patches while training makes each step about 2x cheaper; inference sees every patch (a
short unmasked tuning closes the gap). open_clip implements the recipe as `patch_dropout`, so a
FLIP-trained open_clip ViT-L-14 is this entry's architecture exactly: ViT-L/14 at 224 px,
text tower width 768 / 12 heads / 12 layers, 768-d joint space, as the FLIP configs state.

Weights: none on any hub open_clip knows (tag ""): pass an open_clip state dict of a
FLIP-trained ViT-L-14 with pretrained=PATH. The official release (github.com/facebookresearch/
flip: ViT-L/16 and ViT-H/14 on LAION-2B) is a JAX/t5x checkpoint of a different network and
does not load here: sin-cos position embeddings, no pre-norm, the image embedding is the mean
of all tokens, and the text tower is bidirectional over BERT WordPiece tokens (32 of them)
read at the first token -- open_clip's ViT-L-14 has learned position embeddings, ln_pre, the
class token, and a causal BPE text tower read at the end-of-text token.
"""

from vitbench.zoo.families._open_clip_common import open_clip_entry

open_clip_entry(
    "flip_l14",
    "ViT-L-14",
    "",
    family="flip",
    hub=None,
    patch_size=14,
    embed_dim=1024,
    projection_dim=768,
    params_m=303.97,
    total_m=427.62,
    gflops=81.01,
    data="LAION-400M (50% of image patches dropped in training)",
    paper="arXiv:2212.00794 (FLIP)",
    license="cc-by-nc-4.0",
    notes="no published open_clip weights (pretrained=PATH: an open_clip ViT-L-14 state dict "
    "trained with patch dropout); the official FLIP release is JAX (ViT-L/16, ViT-H/14; "
    "GAP pooling, sin-cos positions, BERT text tower) and is not this architecture",
)
