"""iBOT's ViT backbone: timm's `VisionTransformer`, reading the official iBOT checkpoints.

Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", arXiv:2111.07832;
github.com/bytedance/ibot, models/vision_transformer.py. The backbone is DINO's ViT: pre-norm
blocks, qkv bias, LayerNorm eps 1e-6, a class token, learned absolute position embeddings, no
layer scale and no pooling head. That is timm's `VisionTransformer` with the same widths
(vit_small/base/large_patch16_224, num_classes=0), so this class *is* one and its state-dict
keys are timm's. It sits on the reference backend rather than the timm one only because timm
publishes no iBOT weights: there is no `vit_*.ibot` tag whose pretrained config could state
the entry's facts (no hub repo, no classifier).

The official "backbone (t)" downloads (`checkpoint_teacher.pth`) hold
`{"state_dict": {cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.*, head.*}}`, where
`head.*` is iBOT's projection head (MLP and weight-normed last layers), not a classifier.
A backbone pulled out of a full training checkpoint by hand keeps its `backbone.` prefix (and
`module.` under DDP), and a student's carries `masked_embed`, the [MASK] token that only the
masked-image-modelling input uses; a whole training `checkpoint.pth` holds the teacher under
"teacher". `convert` reads all of these.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from vitbench.contract import ImageFeatures
from vitbench.zoo.adapters.timm import vit_intermediates
from vitbench.zoo.reference.base import ReferenceModel

_WRAPPERS = ("module.", "backbone.")  # DDP, then iBOT's MultiCropWrapper
_TRAINING_ONLY = ("head.", "masked_embed")  # projection head, [MASK] token


class IBotViT(ReferenceModel, VisionTransformer):
    """The iBOT backbone; `pooled` is the normalised class token, as iBOT's linear eval reads it.

    Args mirror iBOT's `vit_small/base/large` builders; other VisionTransformer settings are
    the ones those builders fix (mlp_ratio 4, qkv bias, LayerNorm eps 1e-6).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 384,
                 depth: int = 12, num_heads: int = 6):
        super().__init__(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim,
                         depth=depth, num_heads=num_heads, num_classes=0)

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        if layers:  # timm's own one-pass intermediates, as the timm adapter reads them
            feats, outputs = vit_intermediates(self, pixels, layers, "iBOT")
        else:
            feats, outputs = self.forward_features(pixels), ()
        return ImageFeatures(pooled=self.forward_head(feats, pre_logits=True),
                             tokens=feats[:, self.num_prefix_tokens:], layers=outputs)

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Position embeddings resampled to this model's grid (another resolution), as timm
        does when it loads a checkpoint into a ViT built at another img_size."""
        return checkpoint_filter_fn(state, self)

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official iBOT keys -> timm keys: drop wrapper prefixes and training-only parts.

        Idempotent, so a state dict already in timm's (vitbench's own) layout passes through.
        """
        if isinstance(state.get("teacher"), dict):  # a whole training checkpoint.pth
            state = state["teacher"]
        out = {}
        for key, value in state.items():
            for prefix in _WRAPPERS:
                key = key.removeprefix(prefix)
            if not key.startswith(_TRAINING_ONLY):
                out[key] = value
        return out
