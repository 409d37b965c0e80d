"""ALBEF: align before fuse (arXiv:2107.07651).

Three losses on one tiny model: image-text contrastive (ITC) between the ViT's pooled features
and the text encoder's [CLS] state, image-text matching (ITM) on the fusion encoder with one
hard negative text per image and one hard negative image per text (drawn by ITC similarity),
and masked language modelling (MLM, 15%) through the fusion encoder (text self-attention plus
cross-attention to the image tokens). ITC uses momentum distillation: EMA copies of both
towers give soft targets, mixed with the one-hot labels at weight alpha = 0.4.

Deviations, for a tiny single-process run: no feature queues (ITC and its distillation use the
in-batch pairs only), MLM is not distilled, alpha is constant (ALBEF ramps it over the first
epoch), and texts are hashed words (clip.hash_tokens) rather than BERT word pieces. Negatives
never pair a text with an identical caption (the analogue of BLIP's same-image mask), and
`negative_temperature` can soften their sampling: on a set with few classes (digits: 10
digits, 3 phrasings) the hardest negatives are mostly false negatives of the same class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vitbench.contract import Encoder
from vitbench.pretrain.ema import EMA
from vitbench.pretrain.losses import itc_distill_loss, itm_loss
from vitbench.pretrain.objectives._fusion_parts import (
    TextTransformer,
    image_states,
    itm_pairs,
    mask_text,
    text_ids,
)
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput


@dataclass
class AlbefParams(Hyperparameters):
    """ALBEF (arXiv:2107.07651, sec. 4 "implementation details"): AdamW, wd 0.02, lr warmed up
    to 1e-4 in the first 1000 iterations then cosine-decayed to 1e-5, batch 512, 30 epochs;
    momentum 0.995 for the momentum model, queue 65,536, temperature 0.07 (learnable), MLM 15%,
    distillation alpha 0.4. ALBEF uses a 6-layer text encoder and 6 fusion layers; here 2 + 2.
    ALBEF (and BLIP) add ITC, ITM and MLM/LM unweighted: the weights below default to 1 and
    exist so a tiny run can let ITC, the loss that shapes the image features, dominate."""

    lr: float = 1e-4
    min_lr: float = 1e-5
    batch_size: int = 512
    weight_decay: float = 0.02
    warmup_fraction: float = 1000 / 30_000
    grad_clip: float | None = None
    momentum: float = 0.995
    temperature: float = 0.07
    distill_alpha: float = 0.4  # 0: no momentum distillation (and no momentum model)
    mlm_prob: float = 0.15
    negative_temperature: float | None = None  # None: sample negatives at the ITC temperature
    itc_weight: float = 1.0  # ALBEF sums its three losses unweighted
    itm_weight: float = 1.0
    generative_weight: float = 1.0  # MLM (ALBEF) or captioning (BLIP)
    embed_dim: int = 64
    text_width: int = 64
    text_heads: int = 4
    text_depth: int = 2
    fusion_depth: int = 2
    vocab_size: int = 4096
    context_length: int = 16


class Albef(Objective):
    name = "albef"
    needs = ("caption",)
    Params = AlbefParams
    paper = "arXiv:2107.07651 (ALBEF)"

    def __init__(self, encoder: Encoder, params: AlbefParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        p = params
        self.text = self._text_model(p)
        self.image_proj = nn.Linear(self.feature_dim, p.embed_dim)
        self.text_proj = nn.Linear(p.text_width, p.embed_dim)
        self.cross_proj = nn.Linear(self.feature_dim, p.text_width)  # image tokens -> text width
        self.itm_head = nn.Linear(p.text_width, 2)
        self.temp = nn.Parameter(torch.tensor(p.temperature))
        self._build_heads(p)
        self.momentum = None
        if p.distill_alpha > 0:  # EMA copies of the towers that produce the ITC features
            self.momentum = nn.ModuleDict({
                "backbone": EMA(self.backbone), "image_proj": EMA(self.image_proj),
                "text": EMA(self.text), "text_proj": EMA(self.text_proj)})

    # --- pieces a subclass (BLIP) changes ------------------------------------------------
    def _text_model(self, p: AlbefParams) -> TextTransformer:
        return TextTransformer(p.vocab_size, p.text_width, p.text_heads,
                               p.text_depth + p.fusion_depth, p.text_depth, p.context_length)

    def _build_heads(self, p: AlbefParams) -> None:
        self.mlm_head = nn.Linear(p.text_width, p.vocab_size)

    def _unimodal(self, text: TextTransformer, ids: Tensor) -> Tensor:
        """Text-only states: ALBEF's text encoder is the first `text_depth` layers."""
        return text(ids, stop=self.params.text_depth)

    def _fuse(self, ids: Tensor, states: Tensor, image: Tensor) -> Tensor:
        """Fusion layers on the text states, cross-attending to (projected) image tokens."""
        return self.text(ids, image=image, start=self.params.text_depth, states=states)

    def _generative_loss(self, ids: Tensor, image: Tensor) -> tuple[str, Tensor]:
        """MLM through the fusion encoder (BLIP replaces it with captioning)."""
        masked, labels = mask_text(ids, self.params.vocab_size, self.params.mlm_prob)
        fused = self._fuse(masked, self._unimodal(self.text, masked), image)
        return "mlm", F.cross_entropy(self.mlm_head(fused).flatten(0, 1), labels.flatten())

    # --- the joint space --------------------------------------------------------------------
    def _ids(self, texts: list[str]) -> Tensor:
        return text_ids(texts, self.params.vocab_size, self.params.context_length,
                        self.temp.device)

    def _text_embed(self, text: nn.Module, proj: nn.Module, ids: Tensor) -> Tensor:
        states = self._unimodal(text, ids)
        return F.normalize(proj(text.norm(states[:, 0])).float(), dim=-1)

    def embed_image(self, pixels: Tensor) -> Tensor:
        return F.normalize(self.image_proj(self.features(pixels)).float(), dim=-1)

    def embed_text(self, texts: list[str]) -> Tensor:
        return self._text_embed(self.text, self.text_proj, self._ids(texts))

    def itm_logits(self, pixels: Tensor, texts: list[str]) -> Tensor:
        """(B, 2) ITM logits of pairs (pixels[i], texts[i]); class 1 = match."""
        ids = self._ids(texts)
        tokens = self.cross_proj(image_states(self.backbone, pixels)[1])
        return self.itm_head(self._fuse(ids, self._unimodal(self.text, ids), tokens)[:, 0])

    # --- training ---------------------------------------------------------------------------
    def forward(self, batch: dict) -> StepOutput:
        p = self.params
        ids = self._ids(batch["caption"])
        pooled, tokens = image_states(self.backbone, batch["image"])
        image = F.normalize(self.image_proj(pooled).float(), dim=-1)
        states = self._unimodal(self.text, ids)
        text = F.normalize(self.text_proj(self.text.norm(states[:, 0])).float(), dim=-1)
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        sim_i2t = image @ text.T / self.temp
        alpha = p.distill_alpha if self.momentum is not None else 0.0
        targets = self._momentum_sims(batch["image"], ids) if alpha else sim_i2t.detach()
        itc = itc_distill_loss(sim_i2t, sim_i2t.T, targets, targets.T, alpha)

        itm = self._itm_loss(ids, states, self.cross_proj(tokens), image, text, batch["caption"])
        kind, generative = self._generative_loss(ids, self.cross_proj(tokens))
        loss = p.itc_weight * itc + p.itm_weight * itm + p.generative_weight * generative
        return StepOutput(loss, {"itc": itc.detach(), "itm": itm.detach(),
                                 kind: generative.detach(), "temp": self.temp.detach()})

    @torch.no_grad()
    def _momentum_sims(self, pixels: Tensor, ids: Tensor) -> Tensor:
        m = self.momentum
        image = F.normalize(m["image_proj"](image_states(m["backbone"].module, pixels)[0]),
                            dim=-1).float()
        text = self._text_embed(m["text"].module, m["text_proj"], ids)
        return image @ text.T / self.temp

    def _itm_loss(self, ids: Tensor, states: Tensor, tokens: Tensor, image: Tensor,
                  text: Tensor, captions: list[str]) -> Tensor:
        """Positives, plus one hard negative text per image and image per text (ALBEF 3.2)."""
        tau = self.params.negative_temperature or self.temp.detach()
        pick_text, pick_image, b = itm_pairs(image, text, captions, tau)
        fused = self._fuse(ids[pick_text], states[pick_text], tokens[pick_image])
        logits = self.itm_head(fused[:, 0])
        return itm_loss(logits[:b], logits[b:])

    def after_step(self, step: int, total: int) -> None:
        if self.momentum is None:
            return
        for name, ema in self.momentum.items():
            ema.update(getattr(self, name), self.params.momentum)
