"""CLIP: symmetric InfoNCE between image and text embeddings (arXiv:2103.00020).

The text side is a tiny transformer over hashed word tokens: no tokenizer files are needed
(none can be downloaded) and the vocabulary is a pure function of the words, so a resumed or
distributed run tokenises identically. Only the image tower is saved in the run directory.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from vitbench.contract import Encoder
from vitbench.pretrain.losses import clip_loss
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput


@dataclass
class ClipParams(Hyperparameters):
    """CLIP (arXiv:2103.00020, Sec. 2.5 and Table 19): AdamW with beta2 0.98, eps 1e-6, wd 0.2,
    lr 5e-4 (ViT-B/32) for a 32768 batch, 2000 warmup iterations of ~390k, temperature
    initialised to 0.07 and the logit scale clipped at 100."""

    lr: float = 5e-4
    batch_size: int = 32768
    weight_decay: float = 0.2
    warmup_fraction: float = 2000 / 390_000
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float | None = None
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    embed_dim: int = 64  # joint space
    text_width: int = 64
    text_depth: int = 2
    text_heads: int = 4
    vocab_size: int = 4096
    context_length: int = 32


def hash_tokens(texts: list[str], vocab_size: int, length: int) -> torch.Tensor:
    """(B, length) int64 ids: 0 pads, 1 starts, 2 ends, words hash (crc32) into [3, vocab)."""
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    for row, text in enumerate(texts):
        words = re.findall(r"[a-z0-9]+", text.lower())[: length - 2]
        tokens = [1] + [3 + zlib.crc32(w.encode()) % (vocab_size - 3) for w in words] + [2]
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids


class TextTower(nn.Module):
    """Token + position embeddings, a pre-LN transformer, the end token's state, a projection
    (CLIP's text encoder in miniature; bidirectional, since nothing here is generative)."""

    def __init__(self, p: ClipParams):
        super().__init__()
        self.vocab_size, self.context_length = p.vocab_size, p.context_length
        self.token = nn.Embedding(p.vocab_size, p.text_width)
        self.position = nn.Parameter(torch.randn(p.context_length, p.text_width) * 0.01)
        layer = nn.TransformerEncoderLayer(p.text_width, p.text_heads, 4 * p.text_width,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, p.text_depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(p.text_width)
        self.proj = nn.Linear(p.text_width, p.embed_dim, bias=False)

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = hash_tokens(texts, self.vocab_size, self.context_length).to(self.position.device)
        x = self.token(ids) + self.position
        x = self.norm(self.blocks(x, src_key_padding_mask=ids == 0))
        end = (ids == 2).long().argmax(1)
        return self.proj(x[torch.arange(len(texts), device=x.device), end])


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows, in rank order, with gradients flowing back to their owners."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn as dist_nn

    return torch.cat(dist_nn.all_gather(x), 0)


class Clip(Objective):
    name = "clip"
    needs = ("caption",)
    Params = ClipParams
    paper = "arXiv:2103.00020 (CLIP)"

    def __init__(self, encoder: Encoder, params: ClipParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        self.image_proj = nn.Linear(self.feature_dim, params.embed_dim, bias=False)
        self.text = TextTower(params)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / params.init_temperature)))

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.features(pixels)).float(), dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text(texts).float(), dim=-1)

    def forward(self, batch: dict) -> StepOutput:
        image, text = self.embed_image(batch["image"]), self.embed_text(batch["caption"])
        # every rank computes the full loss over the global batch; all_gather's backward sums
        # the world's gradients, which DDP's averaging turns back into the 1-process gradient
        image, text = gather_with_grad(image), gather_with_grad(text)
        scale = self.logit_scale.exp()
        loss = clip_loss(image, text, scale)
        return StepOutput(loss, {"logit_scale": scale.detach()})

    def after_step(self, step: int, total: int) -> None:
        with torch.no_grad():  # CLIP clips the scale at 100 so training stays stable
            self.logit_scale.clamp_(0, math.log(self.params.max_logit_scale))
