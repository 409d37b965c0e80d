"""Small text pieces shared by image-text objectives: a causal text decoder and an
attentional pooler (CoCa's building blocks), over clip.py's hashed word ids.

Token ids come from `hash_tokens` (0 pads, 1 starts, 2 ends, words hash into [3, vocab)), so
teacher-forced captioning needs no tokenizer files: the decoder predicts hashed ids, and two
words that collide in the hash count as one word (with 4096 ids and the tens of words of the
embedded captions, a collision is unlikely and harmless). Nothing here generates text, so no
id -> word table is needed.
"""

from __future__ import annotations

import torch
from torch import nn


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """(length, length) boolean mask, True where attention is forbidden (the future)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


class AttentionalPooler(nn.Module):
    """`queries` learned vectors cross-attending to a token sequence (CoCa, Sec. 3.2): one
    query gives a pooled embedding, many give a shorter sequence for a decoder to read."""

    def __init__(self, width: int, queries: int, heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(queries, width) * width**-0.5)
        self.norm_kv = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, width) -> (B, queries, width)."""
        kv = self.norm_kv(tokens)
        query = self.query.expand(tokens.shape[0], -1, -1)
        return self.norm(self.attention(query, kv, kv, need_weights=False)[0])


class CausalTextDecoder(nn.Module):
    """CoCa's text decoder in miniature: `unimodal_depth` causal self-attention layers give
    the text embedding (the state at the end token, which sees the whole caption: CoCa's
    appended [CLS] token), then `multimodal_depth` causal layers that also cross-attend to image
    tokens give next-token logits.
    """

    def __init__(self, vocab_size: int, context_length: int, width: int, heads: int,
                 unimodal_depth: int, multimodal_depth: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.randn(context_length, width) * 0.01)
        unimodal = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                              batch_first=True, norm_first=True)
        self.unimodal = nn.TransformerEncoder(unimodal, unimodal_depth,
                                              enable_nested_tensor=False)
        multimodal = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.multimodal = nn.TransformerDecoder(multimodal, multimodal_depth)
        self.norm_text = nn.LayerNorm(width)
        self.norm_out = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def encode(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids -> (the end token's state (B, width), all states (B, L, width)).

        Only a causal mask: padding follows the end token, so no real token attends to it.
        """
        mask = causal_mask(ids.shape[1], ids.device)
        x = self.unimodal(self.token(ids) + self.position[: ids.shape[1]], mask=mask,
                          is_causal=True)
        end = (ids == 2).long().argmax(1)
        pooled = self.norm_text(x[torch.arange(len(ids), device=ids.device), end])
        return pooled, x

    def decode(self, states: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Unimodal states (B, L, width) + image tokens (B, M, width) -> logits (B, L, V)."""
        mask = causal_mask(states.shape[1], states.device)
        x = self.multimodal(states, image_tokens, tgt_mask=mask, tgt_is_causal=True)
        return self.head(self.norm_out(x))
