"""CoCa: a contrastive loss and a captioning loss from one image-text model (arXiv:2205.01917).

The image tower's patch tokens feed two attentional poolers: one query gives the image
embedding of the contrastive loss, `caption_queries` queries give the tokens a causal text
decoder cross-attends to while it predicts the caption word by word (teacher forcing). The
decoder's first layers see only text and give the text embedding; its last layers add
cross-attention (pretrain/objectives/_text.py). Captions are hashed word ids (clip.py's
`hash_tokens`), the captioning targets included: nothing is generated, so no vocabulary file
is needed. Only the image tower is saved in the run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vitbench.contract import Encoder
from vitbench.pretrain.losses import coca_loss
from vitbench.pretrain.losses.contrastive import COCA_CAPTION_WEIGHT, COCA_CLIP_WEIGHT
from vitbench.pretrain.objectives._text import AttentionalPooler, CausalTextDecoder
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput
from vitbench.pretrain.objectives.clip import gather_with_grad, hash_tokens


@dataclass
class CocaParams(Hyperparameters):
    """CoCa (arXiv:2205.01917, Sec. 3.2 and 4.1): batch 65,536, peak lr 8e-4 after warmup over
    the first 2% of steps, Adafactor (here AdamW) with betas (0.9, 0.999) and decoupled weight
    decay 0.01, loss weights caption 2 / contrastive 1, 256 generative pooler queries and 1
    contrastive query, a learnable temperature (CLIP's 0.07 init here). The paper decays the
    lr linearly; the trainer's schedule is cosine."""

    lr: float = 8e-4
    batch_size: int = 65536
    weight_decay: float = 0.01
    warmup_fraction: float = 0.02
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None
    caption_weight: float = COCA_CAPTION_WEIGHT
    clip_weight: float = COCA_CLIP_WEIGHT
    caption_queries: int = 256
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    embed_dim: int = 64
    text_width: int = 64
    text_heads: int = 4
    unimodal_depth: int = 2
    multimodal_depth: int = 2
    vocab_size: int = 4096
    context_length: int = 32


class Coca(Objective):
    name = "coca"
    needs = ("caption",)
    Params = CocaParams
    paper = "arXiv:2205.01917 (CoCa)"

    def __init__(self, encoder: Encoder, params: CocaParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        width, p = self.feature_dim, params
        self.pool_contrastive = AttentionalPooler(width, 1, p.text_heads)
        self.pool_caption = AttentionalPooler(width, p.caption_queries, p.text_heads)
        self.image_proj = nn.Linear(width, p.embed_dim, bias=False)
        self.memory_proj = (nn.Identity() if width == p.text_width
                            else nn.Linear(width, p.text_width))
        self.decoder = CausalTextDecoder(p.vocab_size, p.context_length, p.text_width,
                                         p.text_heads, p.unimodal_depth, p.multimodal_depth)
        self.text_proj = nn.Linear(p.text_width, p.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / p.init_temperature)))

    def _tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._encoder._forward(pixels).tokens

    def _ids(self, texts: list[str]) -> torch.Tensor:
        p = self.params
        return hash_tokens(texts, p.vocab_size, p.context_length).to(self.logit_scale.device)

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = self.pool_contrastive(self._tokens(pixels))[:, 0]
        return F.normalize(self.image_proj(pooled).float(), dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        pooled, _ = self.decoder.encode(self._ids(texts))
        return F.normalize(self.text_proj(pooled).float(), dim=-1)

    def forward(self, batch: dict) -> StepOutput:
        tokens = self._tokens(batch["image"])
        image = self.image_proj(self.pool_contrastive(tokens)[:, 0])
        ids = self._ids(batch["caption"])
        pooled, states = self.decoder.encode(ids)
        text = self.text_proj(pooled)
        logits = self.decoder.decode(states, self.memory_proj(self.pool_caption(tokens)))
        # every rank scores its images against the global batch's texts (as clip.py does);
        # captioning is per pair, so it stays local
        image, text = gather_with_grad(image.float()), gather_with_grad(text.float())
        scale = self.logit_scale.exp()
        contrastive, caption = coca_loss(
            image, text, logits[:, :-1], ids[:, 1:], scale, pad_id=0,
            caption_weight=self.params.caption_weight, clip_weight=self.params.clip_weight)
        return StepOutput(contrastive + caption, {"contrastive": contrastive.detach(),
                                                  "caption": caption.detach(),
                                                  "logit_scale": scale.detach()})

    def after_step(self, step: int, total: int) -> None:
        with torch.no_grad():  # the CLIP cap on the learnable scale
            self.logit_scale.clamp_(0, math.log(self.params.max_logit_scale))
