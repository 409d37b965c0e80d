"""Shared pieces of the image-text fusion objectives (ALBEF, BLIP, VLMo, BEiT-3).

Text is tokenised by `clip.hash_tokens` (crc32 of each word, no tokenizer files): id 0 pads,
1 starts ([CLS] / BLIP's [Decode]), 2 ends; one extra id, `vocab_size`, is the [MASK] token.
Two families of text model live here:

- `TextTransformer`: BERT-style pre-LN layers, each optionally cross-attending to image tokens
  (ALBEF's fusion layers, BLIP's image-grounded encoder and causal decoder);
- `Multiway`: VLMo/BEiT-3's multiway transformer built *around* the zoo ViT, so the saved image
  encoder stays a plain `vit_pico`: text and fused sequences run through the ViT blocks' own
  norm1 + self-attention (shared), and switch only the feed-forward expert by modality.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vitbench.pretrain.losses import sample_hard_negatives
from vitbench.pretrain.masking import mlm_mask
from vitbench.pretrain.objectives.clip import hash_tokens

PAD, START, END = 0, 1, 2


def text_ids(texts: list[str], vocab_size: int, length: int, device: torch.device) -> Tensor:
    return hash_tokens(texts, vocab_size, length).to(device)


def mask_text(ids: Tensor, vocab_size: int, prob: float,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT masking of the word tokens (never pad/start/end); [MASK] is id `vocab_size`.

    At least one word per caption is selected, so tiny captions (3-5 words) always carry a
    target and the loss never averages over an empty set.
    """
    special = ids <= END
    masked, labels = mlm_mask(ids, mask_token_id=vocab_size, vocab_size=vocab_size,
                              special_mask=special, prob=prob, generator=generator)
    empty = (labels == -100).all(1) & (~special).any(1)
    if empty.any():  # force one [MASK] on a random word of each empty row
        score = torch.rand(ids.shape, generator=generator).to(ids.device)
        pick = score.masked_fill(special, -1).argmax(1)
        rows = empty.nonzero().squeeze(1)
        labels[rows, pick[rows]] = ids[rows, pick[rows]]
        masked[rows, pick[rows]] = vocab_size
    return masked, labels


@torch.no_grad()
def itm_pairs(image: Tensor, text: Tensor, captions: list[str],
              temperature: float | Tensor) -> tuple[Tensor, Tensor, int]:
    """Indices (text, image) of the ITM pairs: B positives, then one hard negative text per
    image and one hard negative image per text, sampled by ITC similarity (ALBEF sec. 3.2).

    A negative never has a caption identical to the positive's (the analogue of BLIP's
    same-image mask: with few distinct captions, identical ones are false negatives).
    Returns (pick_text, pick_image, B); pairs [:B] match, [B:] do not.
    """
    b = len(captions)
    sim = image @ text.T / temperature
    same = torch.tensor([[x == y for y in captions] for x in captions], device=sim.device)
    eye = torch.eye(b, dtype=torch.bool, device=sim.device)
    # the positive and identical captions leave the softmax (a finite fill keeps rows with no
    # other caption valid); sample_hard_negatives' +1e-4 floor would otherwise reach them
    sim = sim.masked_fill(same | eye, -1e4)
    neg_text, neg_image = sample_hard_negatives(sim, sim.T)
    every = torch.arange(b, device=sim.device)
    return torch.cat([every, neg_text, every]), torch.cat([every, every, neg_image]), b


def image_states(model: nn.Module, pixels: Tensor) -> tuple[Tensor, Tensor]:
    """(pooled, all tokens incl. the class token) of a timm ViT; pooled as the zoo adapter."""
    feats = model.forward_features(pixels)
    return model.forward_head(feats, pre_logits=True), feats


class TextEmbedding(nn.Module):
    """Word + position embeddings over hashed ids (+1 row: the [MASK] token).

    Word vectors start at BERT's N(0, 0.02), the scale of the position embeddings and of the
    ViT's tokens, not torch's N(0, 1): at unit scale every [CLS] state is its own (shared)
    embedding plus a tiny attention update, all captions embed alike (cosine ~1 in the
    multiway model) and the ITC gradient vanishes.
    """

    def __init__(self, vocab_size: int, width: int, length: int):
        super().__init__()
        self.vocab_size, self.length = vocab_size, length
        self.token = nn.Embedding(vocab_size + 1, width)
        nn.init.normal_(self.token.weight, std=0.02)
        self.position = nn.Parameter(torch.randn(length, width) * 0.02)

    def forward(self, ids: Tensor) -> Tensor:
        return self.token(ids) + self.position[: ids.shape[1]]


class FusionLayer(nn.Module):
    """Pre-LN self-attention (bidirectional or causal), cross-attention to image tokens when
    given them, then a GELU MLP: one BERT layer with ALBEF/BLIP's inserted cross-attention."""

    def __init__(self, width: int, heads: int, cross: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross = cross
        if cross:
            self.norm_x = nn.LayerNorm(width)
            self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: Tensor, pad: Tensor, image: Tensor | None = None,
                causal: bool = False) -> Tensor:
        h = self.norm1(x)
        if causal:  # padding sits after the words, so a causal mask already hides it
            n = x.shape[1]
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
            x = x + self.self_attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        else:
            x = x + self.self_attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        if self.cross and image is not None:
            h = self.norm_x(x)
            x = x + self.cross_attn(h, image, image, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TextTransformer(nn.Module):
    """Embeddings, `depth` layers (those from `cross_from` on cross-attend), a final norm.

    `forward(ids, image=None, start=0, stop=None)` runs layers[start:stop]; ALBEF runs the text
    half without image and the fusion half with it, BLIP's encoder runs every layer, skipping
    cross-attention for unimodal ITC features (image=None); BLIP's decoder is one with
    `causal=True`.
    """

    def __init__(self, vocab_size: int, width: int, heads: int, depth: int, cross_from: int,
                 length: int, causal: bool = False):
        super().__init__()
        self.embed = TextEmbedding(vocab_size, width, length)
        self.layers = nn.ModuleList(FusionLayer(width, heads, i >= cross_from)
                                    for i in range(depth))
        self.norm = nn.LayerNorm(width)
        self.causal = causal

    def forward(self, ids: Tensor, image: Tensor | None = None, start: int = 0,
                stop: int | None = None, states: Tensor | None = None,
                normed: bool | None = None) -> Tensor:
        """`normed` None: apply the final norm only when the last layer ran."""
        x = self.embed(ids) if states is None else states
        pad = ids == PAD
        for layer in self.layers[start:stop]:
            x = layer(x, pad, image, self.causal)
        if normed is None:
            normed = stop is None or stop >= len(self.layers)
        return self.norm(x) if normed else x


class Expert(nn.Module):
    """One modality's feed-forward expert: its own LayerNorm + GELU MLP (VLMo's V/L/VL-FFN)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.norm(x))


class Multiway(nn.Module):
    """VLMo/BEiT-3's multiway transformer around a timm ViT (`backbone`, not registered here).

    The image path *is* the ViT (its blocks' norm2 + mlp are the vision expert), so the saved
    encoder loads as the plain zoo entry. Text adds its own embeddings, a language expert per
    block and, in the top `vl_layers` blocks, a vision-language expert used on fused sequences
    (below them, fused tokens keep their modality's expert, as in VLMo). Self-attention, its
    LayerNorm and the final norm are shared by all modalities.
    """

    def __init__(self, backbone: nn.Module, vocab_size: int, length: int, vl_layers: int):
        super().__init__()
        self._backbone = [backbone]  # a plain list: the objective registers the backbone
        width, depth = backbone.embed_dim, len(backbone.blocks)
        self.text_embed = TextEmbedding(vocab_size, width, length)
        self.type_embed = nn.Parameter(torch.zeros(2, width))  # 0 text, 1 image (fused only)
        self.text_experts = nn.ModuleList(Expert(width) for _ in range(depth))
        self.vl_start = depth - vl_layers
        self.vl_experts = nn.ModuleList(Expert(width) for _ in range(vl_layers))
        self.mask_token = nn.Parameter(torch.zeros(width))  # masked image patches (MIM)

    @property
    def backbone(self) -> nn.Module:
        return self._backbone[0]

    def shared_attention(self) -> list[nn.Parameter]:
        """The parameters every modality shares (VLMo freezes them in its text stage)."""
        return [p for b in self.backbone.blocks for m in (b.norm1, b.attn, b.ls1)
                for p in m.parameters()]

    def image_tokens(self, pixels: Tensor, mask: Tensor | None = None) -> Tensor:
        """Patch embedding (masked patches -> the mask token), class token, positions."""
        vit = self.backbone
        x = vit.patch_embed(pixels)
        grid = x.shape[1:3] if x.dim() == 4 else None
        x = x.flatten(1, 2) if grid is not None else x
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        if grid is not None:
            x = x.unflatten(1, grid)
        return vit.norm_pre(vit._pos_embed(x))

    def _block(self, i: int, x: Tensor, bias: Tensor | None, n_text: int, n_image: int,
               fused: bool) -> Tensor:
        block = self.backbone.blocks[i]
        x = x + block.ls1(block.attn(block.norm1(x), attn_mask=bias))
        if fused and i >= self.vl_start:
            ffn = self.vl_experts[i - self.vl_start](x)
        else:
            text, image = x[:, :n_text], x[:, n_text:]
            parts = []
            if n_text:
                parts.append(self.text_experts[i](text))
            if n_image:
                parts.append(block.mlp(block.norm2(image)))
            ffn = torch.cat(parts, 1)
        return x + block.ls2(ffn)

    def forward(self, ids: Tensor | None = None, image: Tensor | None = None) -> Tensor:
        """Run [text tokens, image tokens] (either may be absent) through all blocks.

        `ids`: (B, L) text ids; `image`: (B, 1 + N, D) from `image_tokens`. Returns the final
        normed states in the same order; padded text positions are never attended to.
        """
        parts, n_text, n_image = [], 0, 0
        fused = ids is not None and image is not None
        if ids is not None:
            n_text = ids.shape[1]
            parts.append(self.text_embed(ids) + (self.type_embed[0] if fused else 0))
        if image is not None:
            n_image = image.shape[1]
            parts.append(image + (self.type_embed[1] if fused else 0))
        x = torch.cat(parts, 1)
        bias = None
        if ids is not None:
            pad = F.pad(ids == PAD, (0, n_image), value=False)
            bias = torch.zeros(pad.shape, dtype=x.dtype, device=x.device)
            bias = bias.masked_fill(pad, float("-inf"))[:, None, None, :]
        for i in range(len(self.backbone.blocks)):
            x = self._block(i, x, bias, n_text, n_image, fused)
        return self.backbone.norm(x)

    def pool_image(self, states: Tensor) -> Tensor:
        """The zoo entry's pooled features from the image part of the states."""
        return self.backbone.forward_head(states, pre_logits=True)
