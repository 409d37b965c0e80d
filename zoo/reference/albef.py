"""ALBEF: align image and text with a contrastive loss, then fuse them with cross-attention.

Li et al., "Align before Fuse: Vision and Language Representation Learning with Momentum
Distillation", arXiv:2107.07651; official code github.com/salesforce/ALBEF (models/vit.py,
models/xbert.py, models/model_retrieval.py).

Three encoders share the work:
- image: a ViT-B/16 in the DeiT layout (class token, learned position embeddings, pre-norm
  blocks, final LayerNorm; eps 1e-6);
- text: the first `fusion_layer` (6) layers of BERT-base, text only;
- fusion: the last 6 BERT layers, each with cross-attention from text to all image tokens.
ITC uses `vision_proj` / `text_proj` (768 -> 256) of the two class tokens; ITM classifies the
fusion class token with `itm_head` (logit 1 = "match").

Checkpoint layout (ALBEF.pth and the retrieval fine-tunes, under "model"): `visual_encoder.*`
(DeiT keys), `text_encoder.bert.*` (pre-training, BertForMaskedLM) or `text_encoder.*`
(fine-tunes, BertModel) with `crossattention` in layers >= 6, `vision_proj`, `text_proj`,
`itm_head`. The momentum copies (`*_m`), queues, temperature and MLM head are not needed to
encode and are dropped by `convert`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.contract import ImageFeatures
from vitbench.errors import VitbenchError
from vitbench.zoo.reference._bert import (
    BertLayer,
    TextEmbeddings,
    TokenizerMixin,
    pick_layers,
    rename_bert_embeddings,
    rename_bert_layer,
)
from vitbench.zoo.reference.base import ReferenceModel

# ---------------------------------------------------------------------------------------------
# image encoder: DeiT-layout ViT (key names equal timm's VisionTransformer and ALBEF's vit.py)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViTAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with a class token; returns every block's output so layers can be probed."""

    def __init__(self, img_size: int, patch_size: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch_size) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(ViTBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(pixels)
        if x.shape[1] + 1 != self.pos_embed.shape[1]:
            raise VitbenchError(f"ALBEF: a {tuple(pixels.shape[-2:])} image gives {x.shape[1]} "
                                f"patches; this model was built for {self.pos_embed.shape[1] - 1}")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


# ---------------------------------------------------------------------------------------------
# the model


class ALBEF(TokenizerMixin, ReferenceModel):
    """ALBEF retrieval model: image encoder, text encoder, fusion encoder, ITC/ITM heads.

    Args:
        img_size, patch_size, vision_dim, vision_depth, vision_heads: the ViT (B/16 at 256 px).
        vocab_size, text_dim, text_layers, text_heads, text_mlp_dim: BERT-base.
        fusion_layer: layers [fusion_layer, text_layers) cross-attend to the image tokens.
        embed_dim: width of the ITC projections.
        max_text_len: tokens per text (the official retrieval evaluation uses 30).
        tokenizer: a transformers tokenizer for `forward_text` / `itm_scores`.
    """

    text_padding = "longest"

    def __init__(self, img_size: int = 256, patch_size: int = 16, vision_dim: int = 768,
                 vision_depth: int = 12, vision_heads: int = 12, vocab_size: int = 30522,
                 text_dim: int = 768, text_layers: int = 12, text_heads: int = 12,
                 text_mlp_dim: int = 3072, fusion_layer: int = 6, max_positions: int = 512,
                 embed_dim: int = 256, max_text_len: int = 30, tokenizer=None):
        super().__init__()
        self.visual = VisionTransformer(img_size, patch_size, vision_dim, vision_depth,
                                        vision_heads)
        self.embeddings = TextEmbeddings(vocab_size, text_dim, max_positions)
        self.layers = nn.ModuleList(
            BertLayer(text_dim, text_heads, text_mlp_dim,
                      cross_dim=vision_dim if i >= fusion_layer else None)
            for i in range(text_layers))
        self.fusion_layer = fusion_layer
        self.vision_proj = nn.Linear(vision_dim, embed_dim)
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.itm_head = nn.Linear(text_dim, 2)
        self.max_text_len = max_text_len
        self.tokenizer = tokenizer

    # -- image ----------------------------------------------------------------------------

    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """All image tokens after the final norm (B, 1 + N, D): what the fusion layers see."""
        return self.visual.norm(self.visual(pixels)[-1])

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        blocks = self.visual(pixels)
        x = self.visual.norm(blocks[-1])
        return ImageFeatures(pooled=x[:, 0], tokens=x[:, 1:], projected=self.vision_proj(x[:, 0]),
                             layers=pick_layers(blocks, layers, self.visual.norm))

    def image_tower(self) -> nn.Module:
        """The image tower (what params_m counts): the ViT, without vision_proj."""
        return self.visual

    # -- text -----------------------------------------------------------------------------

    def text_hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Output of the text-only layers (B, L, D); `mask` (B, L) is nonzero on real tokens."""
        x, mask = self.embeddings(ids), mask.bool()
        for layer in self.layers[: self.fusion_layer]:
            x = layer(x, mask)
        return x

    def text_embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ITC text embedding (un-normalised): text_proj of the text encoder's class token."""
        return self.text_proj(self.text_hidden(ids, mask)[:, 0])

    def forward_text(self, texts: Sequence[str]) -> torch.Tensor:
        ids, mask = self.tokenize(texts, self.cls_device)
        return self.text_embed(ids, mask)

    # -- fusion ---------------------------------------------------------------------------

    def itm_logits(self, pixels: torch.Tensor, ids: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
        """ITM logits (B, 2) of the pairs (pixels[i], ids[i]); column 1 is "match"."""
        image, mask = self.image_embeds(pixels), mask.bool()
        x = self.text_hidden(ids, mask)
        for layer in self.layers[self.fusion_layer:]:
            x = layer(x, mask, context=image)
        return self.itm_head(x[:, 0])

    def itm_scores(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Probability that texts[i] describes pixels[i] (B,), for re-ranking retrieval."""
        if pixels.shape[0] != len(texts):
            raise VitbenchError(f"itm_scores pairs images with texts: got {pixels.shape[0]} "
                                f"images and {len(texts)} texts")
        ids, mask = self.tokenize(texts, self.cls_device)
        return self.itm_logits(pixels, ids, mask).softmax(-1)[:, 1]

    def prepare_text(self, text: str) -> str:
        """Texts are normalised as ALBEF's datasets do before tokenizing (`clean_caption`)."""
        return clean_caption(text)

    @property
    def cls_device(self) -> torch.device:
        return self.visual.cls_token.device

    # -- weights --------------------------------------------------------------------------

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official ALBEF keys -> ours; a state already in our layout passes unchanged."""
        if not any(k.startswith("visual_encoder.") for k in state):
            return dict(state)
        out = {}
        for key, value in state.items():
            new = _convert_key(key)
            if new is not None:
                out[new] = value
        return out

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resample the position embeddings to this model's grid (bicubic, as ALBEF does when
        fine-tuning at 384 px from 256 px weights)."""
        pos = state.get("visual.pos_embed")
        want = self.visual.pos_embed.shape[1]
        if pos is None or pos.shape[1] == want or pos.is_meta:
            return state
        old, new = math.isqrt(pos.shape[1] - 1), math.isqrt(want - 1)
        grid = pos[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(new, new), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).flatten(1, 2).to(pos.dtype)
        return {**state, "visual.pos_embed": torch.cat([pos[:, :1], grid], dim=1)}


_DROPPED = re.compile(r"^(\w+_m\.|image_queue|text_queue|idx_queue|queue_ptr|temp$|"
                      r"text_encoder\.cls\.|text_encoder\.(bert\.)?pooler\.|"
                      r"text_encoder\.(bert\.)?embeddings\.position_ids)")


def _convert_key(key: str) -> str | None:
    """One official key -> ours, or None for what encoding does not use."""
    if _DROPPED.match(key):
        return None
    if key.startswith("visual_encoder."):
        return "visual." + key.removeprefix("visual_encoder.")
    if key.split(".")[0] in ("vision_proj", "text_proj", "itm_head"):
        return key
    rest = re.sub(r"^text_encoder\.(bert\.)?", "", key)
    if rest == key:
        raise VitbenchError(f"unexpected key {key!r} in an ALBEF checkpoint")
    if rest.startswith("embeddings."):
        return "embeddings." + rename_bert_embeddings(rest.removeprefix("embeddings."))
    layer = re.match(r"encoder\.layer\.(\d+)\.(.+)", rest)
    if layer is None:
        raise VitbenchError(f"unexpected key {key!r} in an ALBEF checkpoint")
    return f"layers.{layer[1]}.{rename_bert_layer(layer[2])}"


def clean_caption(text: str, max_words: int = 30) -> str:
    """ALBEF's caption normalisation (dataset/utils.py pre_caption): lower case, no punctuation,
    '-' and '/' as spaces, at most `max_words` words; its weights only ever saw such text."""
    text = re.sub(r"([,.'!?\"()*#:;~])", "", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    words = re.sub(r"\s{2,}", " ", text).strip("\n").strip(" ").split(" ")
    return " ".join(words[:max_words])

