"""Pieces shared by the fusion models (ALBEF, VLMo): BERT embeddings, a post-norm BERT layer
with optional cross-attention, the tokenizer handling of a text side, per-layer outputs.

Both models were trained with the `bert-base-uncased` WordPiece vocabulary. Its files cannot be
downloaded here, so a model gets its tokenizer from the weights directory (`use_weights_dir`,
called by the loader) or from `tokenizer=` / `set_tokenizer`; until then encoding text raises
a one-line error that names the files needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.contract import LayerOutput
from vitbench.errors import VitbenchError

TOKENIZER_FILES = ("the bert-base-uncased tokenizer files (tokenizer_config.json + vocab.txt "
                   "or tokenizer.json)")


class TextEmbeddings(nn.Module):
    """Word + token-type (+ absolute position) embeddings, then LayerNorm: BERT's input layer.

    VLMo keeps the position table in its checkpoints but, using relative position bias, never
    adds it: `absolute=False` leaves the table out of the module altogether.
    """

    def __init__(self, vocab_size: int, dim: int, max_positions: int = 512,
                 type_vocab_size: int = 2, absolute: bool = True, eps: float = 1e-12):
        super().__init__()
        self.word = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_positions, dim) if absolute else None
        self.token_type = nn.Embedding(type_vocab_size, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.word(ids) + self.token_type.weight[0]  # every token is segment 0
        if self.position is not None:
            x = x + self.position.weight[: ids.shape[1]]
        return self.norm(x)


class MultiHeadAttention(nn.Module):
    """Separate q/k/v/o projections (BERT layout); keys and values may come from another
    width (`kv_dim`), which is how ALBEF's text queries attend to image tokens."""

    def __init__(self, dim: int, num_heads: int, kv_dim: int | None = None):
        super().__init__()
        kv_dim = kv_dim or dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from `x` (B, L, D) to `context` (B, S, kv_dim); `key_mask` (B, S) is True
        for keys that may be attended to."""
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (heads, -1)).transpose(1, 2)

        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(context)),
                                             split(self.v(context)), attn_mask=mask)
        return self.o(out.transpose(1, 2).flatten(2))


class BertLayer(nn.Module):
    """Post-norm BERT layer: self-attention, optional cross-attention, GELU feed-forward; each
    sub-layer is residual + LayerNorm."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, cross_dim: int | None = None,
                 eps: float = 1e-12):
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.cross = MultiHeadAttention(dim, num_heads, cross_dim) if cross_dim else None
        self.cross_norm = nn.LayerNorm(dim, eps=eps) if cross_dim else None
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, x, mask))
        if self.cross is not None:
            if context is None:
                raise ValueError("a cross-attention layer needs the tokens to attend to")
            x = self.cross_norm(x + self.cross(x, context))
        return self.ffn_norm(x + self.fc2(F.gelu(self.fc1(x))))


# BERT's own key names (the official checkpoints of ALBEF and VLMo use them) -> ours.
BERT_LAYER_KEYS = {
    "attention.self.query": "attn.q", "attention.self.key": "attn.k",
    "attention.self.value": "attn.v", "attention.output.dense": "attn.o",
    "attention.output.LayerNorm": "attn_norm",
    "crossattention.self.query": "cross.q", "crossattention.self.key": "cross.k",
    "crossattention.self.value": "cross.v", "crossattention.output.dense": "cross.o",
    "crossattention.output.LayerNorm": "cross_norm",
    "intermediate.dense": "fc1", "output.dense": "fc2", "output.LayerNorm": "ffn_norm",
}
BERT_EMBEDDING_KEYS = {"word_embeddings": "word", "position_embeddings": "position",
                       "token_type_embeddings": "token_type", "LayerNorm": "norm"}


def rename_bert_layer(key: str) -> str:
    """'attention.self.query.weight' -> 'attn.q.weight' (keys inside one encoder layer)."""
    for theirs, ours in BERT_LAYER_KEYS.items():
        if key.startswith(theirs + "."):
            return ours + key[len(theirs):]
    raise KeyError(f"unknown BERT layer key {key!r}")


def rename_bert_embeddings(key: str) -> str:
    """'word_embeddings.weight' -> 'word.weight' (keys inside the embeddings module)."""
    name, _, rest = key.partition(".")
    return f"{BERT_EMBEDDING_KEYS[name]}.{rest}"


class TokenizerMixin:
    """The text side's tokenizer: from `tokenizer=`, `set_tokenizer`, or the weights directory.

    Subclasses set `max_text_len` and `text_padding` ("longest" or "max_length", as their
    official evaluation pads), may clean texts in `prepare_text`, and call `tokenize`.
    """

    tokenizer: Any = None
    max_text_len: int = 30
    text_padding: str = "longest"

    def set_tokenizer(self, tokenizer: Any) -> None:
        """A transformers tokenizer, or a directory holding its files."""
        if isinstance(tokenizer, str | os.PathLike):
            tokenizer = load_tokenizer(Path(tokenizer))
            if tokenizer is None:
                raise VitbenchError(f"no tokenizer files in that directory (expected "
                                    f"{TOKENIZER_FILES})")
        self.tokenizer = tokenizer

    def use_weights_dir(self, path: Path) -> None:
        """Loader hook: tokenizer files beside the weights (in the weights directory, or next
        to the weights file) supply the tokenizer; an explicit `tokenizer=` wins."""
        if self.tokenizer is None:
            path = Path(path)
            self.tokenizer = load_tokenizer(path if path.is_dir() else path.parent)

    def prepare_text(self, text: str) -> str:
        """What a text goes through before tokenizing (the model's own caption cleaning)."""
        return text

    def tokenize(self, texts: Sequence[str], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask as bool), truncated to `max_text_len`."""
        if self.tokenizer is None:
            raise VitbenchError(
                f"{type(self).__name__}: no text tokenizer; encoding text needs {TOKENIZER_FILES} "
                "in the weights directory, or model.set_tokenizer(<tokenizer or directory>)")
        if isinstance(texts, str) or not len(texts):
            raise VitbenchError("texts must be a non-empty list of strings")
        batch = self.tokenizer([self.prepare_text(t) for t in texts], padding=self.text_padding,
                               truncation=True, max_length=self.max_text_len,
                               return_tensors="pt")
        return batch["input_ids"].to(device), batch["attention_mask"].to(device).bool()


def load_tokenizer(directory: Path) -> Any | None:
    """AutoTokenizer from local files only; None when the directory holds none."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError):  # no (or unreadable) tokenizer files here
        return None


def pick_layers(blocks: Sequence[torch.Tensor], layers: Sequence[int],
                norm: nn.Module) -> tuple[LayerOutput, ...]:
    """`ImageFeatures.layers`: the asked blocks' outputs (class token first) after the final
    norm, as DINOv2's linear evaluation reads them."""
    depth, out = len(blocks), []
    for i in layers:
        if not -depth <= i < depth:
            raise VitbenchError(f"layer {i} out of range for a {depth}-block encoder")
        x = norm(blocks[i])
        out.append(LayerOutput(index=i, cls=x[:, 0], tokens=x[:, 1:]))
    return tuple(out)
