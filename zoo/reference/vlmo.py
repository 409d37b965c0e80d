"""VLMo: one multiway transformer whose blocks share self-attention and switch feed-forward
experts by modality.

Bao et al., "VLMo: Unified Vision-Language Pre-Training with Mixture-of-Modality-Experts",
arXiv:2111.02358; official code github.com/microsoft/unilm/tree/master/vlmo
(vlmo/modules/multiway_transformer.py, vlmo/modules/vlmo_module.py).

Each block: x + gamma_1 * attn(norm1(x)), then x + gamma_2 * expert(x), an expert being its own
LayerNorm + GELU MLP (V-FFN for image tokens, L-FFN for text tokens; the top blocks also have a
VL-FFN used on fused sequences). Attention is BEiT-style: q/v biases (no k bias) and a relative
position bias gathered from one table for all layers (columns layer-major: layer * heads +
head); images use BEiT's 2-D index, texts a 1-D one, and fused sequences add two constant
entries for text->image and image->text. No absolute position embeddings (VLMo-Base); a
modality-type embedding (0 text, 1 image) is added to every token.

Paths (as the official `infer_image_ft` / `infer_text_ft` / `infer` compute them):
- image: V-FFN in every block, final norm; ITC = `itc_image_proj` of the class token;
- text: L-FFN in every block, final norm; ITC = `itc_text_proj` of the class token;
- fusion ([text, image] in one sequence): split V-/L-FFN below `vl_ffn_start`, VL-FFN above;
  ITM = `itm_head(tanh(pooler(class token)))`.

Checkpoint layout (vlmo_base_patch16_224.pt): `transformer.*` (patch_embed.proj, cls_token,
blocks.N.{norm1, attn.{qkv.weight, q_bias, v_bias, proj}, gamma_1, gamma_2, norm2_imag,
mlp_imag, norm2_text, mlp_text, norm2_vl, mlp_vl}, norm), `relative_position_bias_table`,
`text_embeddings.*` (BERT embeddings), `token_type_embeddings`, `itc_{image,text}_proj.fc`,
`pooler.dense`, `itm_score.fc`; the MLM head, the VL-FFN ITC heads and logit scales are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.contract import ImageFeatures
from vitbench.errors import VitbenchError
from vitbench.zoo.reference._bert import (
    TextEmbeddings,
    TokenizerMixin,
    pick_layers,
    rename_bert_embeddings,
)
from vitbench.zoo.reference.base import ReferenceModel

IMAGE, TEXT, VL = "image", "text", "vl"


class Expert(nn.Module):
    """One modality's feed-forward: its own pre-norm, then a GELU MLP."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Shared self-attention with BEiT's q/v biases and an additive bias (relative positions
    plus the key padding mask)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        qkv_bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        q, k, v = qkv.unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).flatten(2))


class MultiwayBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, with_vl: bool,
                 layer_scale: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.gamma_1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.gamma_2 = nn.Parameter(torch.full((dim,), layer_scale))
        names = (IMAGE, TEXT, VL) if with_vl else (IMAGE, TEXT)
        self.experts = nn.ModuleDict({name: Expert(dim, mlp_dim) for name in names})

    def forward(self, x: torch.Tensor, bias: torch.Tensor, modality: str,
                text_len: int = 0) -> torch.Tensor:
        """`modality` image / text, or vl for a fused [text (text_len tokens), image] sequence:
        the VL-FFN where the block has one, else each part through its own expert."""
        x = x + self.gamma_1 * self.attn(self.norm1(x), bias)
        if modality != VL or VL in self.experts:
            return x + self.gamma_2 * self.experts[modality](x)
        text, image = x[:, :text_len], x[:, text_len:]
        return torch.cat([text + self.gamma_2 * self.experts[TEXT](text),
                          image + self.gamma_2 * self.experts[IMAGE](image)], dim=1)


class VLMo(TokenizerMixin, ReferenceModel):
    """VLMo multiway transformer with its ITC projections and ITM head.

    Args:
        img_size, patch_size: the image grid (fixed: the relative position index is built
            for it; the official code re-fits the bias table to change it).
        dim, depth, num_heads, mlp_ratio: the transformer (VLMo-Base: 768, 12, 12, 4).
        vl_ffn_start: first block with a VL-FFN (Base: 10, i.e. the top two).
        vocab_size: BERT's WordPiece vocabulary.
        max_text_len: tokens per text (40, padded to this length as the official data does).
        text_positions: text distances the bias table was sized for (the official
            `max_text_len_of_initckpt`, 196), which fixes the table's row count.
        layer_scale: initial gamma_1 / gamma_2 (random init only).
        tokenizer: a transformers tokenizer for `forward_text` / `itm_scores`.
    """

    text_padding = "max_length"

    def __init__(self, img_size: int = 224, patch_size: int = 16, dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 vl_ffn_start: int = 10, vocab_size: int = 30522, max_text_len: int = 40,
                 text_positions: int = 196, layer_scale: float = 0.1, tokenizer=None):
        super().__init__()
        self.num_heads, self.depth = num_heads, depth
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_embed = nn.Embedding(2, dim)  # 0 text, 1 image
        self.text_embed = TextEmbeddings(vocab_size, dim, absolute=False)
        self.blocks = nn.ModuleList(
            MultiwayBlock(dim, num_heads, int(dim * mlp_ratio), i >= vl_ffn_start, layer_scale)
            for i in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.itc_image_proj = nn.Linear(dim, dim, bias=False)
        self.itc_text_proj = nn.Linear(dim, dim, bias=False)
        self.pooler = nn.Linear(dim, dim)
        self.itm_head = nn.Linear(dim, 2)

        grid = img_size // patch_size
        image_index, image_rows = image_relative_index(grid)
        text_index, rows = text_relative_index(max_text_len, text_positions, image_rows)
        self.image_rows = image_rows  # the table's image part; the next two rows: t->i, i->t
        self.rel_pos_table = nn.Parameter(torch.zeros(rows, num_heads * depth))
        self.register_buffer("image_index", image_index, persistent=False)
        self.register_buffer("text_index", text_index, persistent=False)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.max_text_len = max_text_len
        self.tokenizer = tokenizer

    # -- relative position bias ------------------------------------------------------------

    def _bias(self, index: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Per-layer additive attention bias (depth, B|1, heads, L, L): the table gathered at
        `index`, plus -inf on padded keys."""
        n = index.shape[0]
        bias = self.rel_pos_table[index.reshape(-1)].reshape(n, n, self.depth, self.num_heads)
        bias = bias.permute(2, 3, 0, 1).unsqueeze(1)
        if key_mask is not None:
            key_mask = key_mask.bool()
            padding = torch.zeros(key_mask.shape, dtype=bias.dtype, device=bias.device)
            padding = padding.masked_fill(~key_mask, float("-inf"))
            bias = bias + padding[None, :, None, None, :]
        return bias

    def _fused_index(self, text_len: int) -> torch.Tensor:
        """[text, image] index: the two blocks on the diagonal, constants off it."""
        text, image = self.text_index[:text_len, :text_len], self.image_index
        t2i = torch.full((text_len, image.shape[0]), self.image_rows, dtype=text.dtype,
                         device=text.device)
        i2t = torch.full((image.shape[0], text_len), self.image_rows + 1, dtype=text.dtype,
                         device=text.device)
        return torch.cat([torch.cat([text, t2i], 1), torch.cat([i2t, image], 1)], 0)

    # -- embeddings -------------------------------------------------------------------------

    def _image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        if x.shape[1] + 1 != self.image_index.shape[0]:
            raise VitbenchError(f"VLMo: a {tuple(pixels.shape[-2:])} image gives {x.shape[1]} "
                                f"patches; this model was built for "
                                f"{self.image_index.shape[0] - 1}")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.modality_embed.weight[1]

    def _text_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.text_index.shape[0]:
            raise VitbenchError(f"VLMo: {ids.shape[1]} text tokens; at most "
                                f"{self.text_index.shape[0]} (max_text_len)")
        return self.text_embed(ids) + self.modality_embed.weight[0]

    # -- the three paths --------------------------------------------------------------------

    def image_blocks(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output on the image-only (V-FFN) path, before the final norm."""
        x, bias = self._image_tokens(pixels), self._bias(self.image_index, None)
        outputs = []
        for block, layer_bias in zip(self.blocks, bias, strict=True):
            x = block(x, layer_bias, IMAGE)
            outputs.append(x)
        return outputs

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        blocks = self.image_blocks(pixels)
        x = self.norm(blocks[-1])
        return ImageFeatures(pooled=x[:, 0], tokens=x[:, 1:],
                             projected=self.itc_image_proj(x[:, 0]),
                             layers=pick_layers(blocks, layers, self.norm))

    def image_tower(self) -> nn.Module:
        """The image tower (what params_m counts): what the image path runs (patch, class and
        modality embeddings, the shared bias table and attention, V-FFNs, final norm), without
        the ITC projection, text embeddings, L-/VL-FFNs and ITM head."""
        skip = re.compile(r"^(text_embed|itc_\w+|pooler|itm_head)\.|\.experts\.(text|vl)\.")
        return nn.ParameterList(p for name, p in self.named_parameters() if not skip.search(name))

    def text_embed_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ITC text embedding (un-normalised) on the text-only (L-FFN) path; `mask` nonzero on
        real tokens."""
        x = self._text_tokens(ids)
        n = ids.shape[1]
        for block, layer_bias in zip(self.blocks, self._bias(self.text_index[:n, :n], mask),
                                     strict=True):
            x = block(x, layer_bias, TEXT)
        return self.itc_text_proj(self.norm(x)[:, 0])

    def forward_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.text_embed_ids(*self.tokenize(texts, self.cls_token.device))

    def itm_logits(self, pixels: torch.Tensor, ids: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
        """ITM logits (B, 2) of the pairs (pixels[i], ids[i]); column 1 is "match"."""
        text, image = self._text_tokens(ids), self._image_tokens(pixels)
        n = ids.shape[1]
        key_mask = torch.cat([mask.bool(), torch.ones(image.shape[:2], dtype=torch.bool,
                                               device=mask.device)], dim=1)
        x = torch.cat([text, image], dim=1)
        for block, layer_bias in zip(self.blocks, self._bias(self._fused_index(n), key_mask),
                                     strict=True):
            x = block(x, layer_bias, VL, text_len=n)
        return self.itm_head(torch.tanh(self.pooler(self.norm(x)[:, 0])))

    def itm_scores(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Probability that texts[i] describes pixels[i] (B,), for re-ranking retrieval."""
        if pixels.shape[0] != len(texts):
            raise VitbenchError(f"itm_scores pairs images with texts: got {pixels.shape[0]} "
                                f"images and {len(texts)} texts")
        ids, mask = self.tokenize(texts, self.cls_token.device)
        return self.itm_logits(pixels, ids, mask).softmax(-1)[:, 1]

    # -- weights ----------------------------------------------------------------------------

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official VLMo keys -> ours; a state already in our layout passes unchanged."""
        state = {k.removeprefix("module."): v for k, v in state.items()}  # DeepSpeed saves
        if not any(k.startswith("transformer.") for k in state):
            return state
        out = {}
        for key, value in state.items():
            new = _convert_key(key)
            if new is not None:
                out[new] = value
        return out


_DROPPED = re.compile(
    r"^(mlm_score\.|itc_vl_(image|text)_proj\.|logit_scale|logit_vl_scale|"
    r"(text_|text_imag_)?relative_position_index|text_embeddings\.position_ids|"
    r"text_embeddings\.token_type_ids|"
    # VLMo-Base adds no absolute text positions (relative bias instead), though it keeps a table
    r"text_embeddings\.position_embeddings\.)")
_EXPERTS = {"imag": IMAGE, "text": TEXT, "vl": VL}
_RENAMES = {  # exact prefixes
    "transformer.patch_embed.proj.": "patch_embed.", "transformer.cls_token": "cls_token",
    "transformer.norm.": "norm.", "relative_position_bias_table": "rel_pos_table",
    "token_type_embeddings.": "modality_embed.", "itc_image_proj.fc.": "itc_image_proj.",
    "itc_text_proj.fc.": "itc_text_proj.", "pooler.dense.": "pooler.",
    "itm_score.fc.": "itm_head.",
}


def _convert_key(key: str) -> str | None:
    """One official key -> ours, or None for what encoding does not use."""
    if _DROPPED.match(key):
        return None
    for theirs, ours in _RENAMES.items():
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    if key.startswith("text_embeddings."):
        return "text_embed." + rename_bert_embeddings(key.removeprefix("text_embeddings."))
    block = re.match(r"transformer\.blocks\.(\d+)\.(.+)", key)
    if block is None:
        raise VitbenchError(f"unexpected key {key!r} in a VLMo checkpoint")
    i, rest = block.groups()
    expert = re.match(r"(norm2|mlp)_(imag|text|vl)\.(.+)", rest)
    if expert is not None:
        part, name, tail = expert.groups()
        rest = f"experts.{_EXPERTS[name]}." + ("norm." if part == "norm2" else "") + tail
    return f"blocks.{i}.{rest}"


# ---------------------------------------------------------------------------------------------
# relative position indices (rows of the shared bias table)


def image_relative_index(grid: int) -> tuple[torch.Tensor, int]:
    """BEiT's index for [cls, grid x grid patches], and the number of table rows it uses.

    Patch pairs index (dy + grid - 1) * (2 * grid - 1) + (dx + grid - 1); the class token
    gets three rows of its own (cls->patch, patch->cls, cls->cls) after them.
    """
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    span = 2 * grid - 1
    rows = span * span + 3
    index = torch.empty(grid * grid + 1, grid * grid + 1, dtype=torch.long)
    index[1:, 1:] = ((ys[:, None] - ys[None, :] + grid - 1) * span
                     + xs[:, None] - xs[None, :] + grid - 1)
    index[0, :] = rows - 3
    index[:, 0] = rows - 2
    index[0, 0] = rows - 1
    return index, rows


def text_relative_index(length: int, text_positions: int,
                        image_rows: int) -> tuple[torch.Tensor, int]:
    """The text index for `length` tokens, and the table's total row count.

    After the image rows come one row for text->image and one for image->text; token i
    attending to token j reads row image_rows + text_positions + (j - i) (|j - i| <
    text_positions - 1); the class token's three rows close the table, image_rows +
    2 * text_positions + 2 rows in all.
    """
    rows = image_rows + 2 * text_positions + 2
    pos = torch.arange(length - 1)
    index = torch.empty(length, length, dtype=torch.long)
    index[1:, 1:] = image_rows + text_positions + pos[None, :] - pos[:, None]
    index[0, :] = rows - 3
    index[:, 0] = rows - 2
    index[0, 0] = rows - 1
    return index, rows
