"""VLMo: mixture-of-modality-experts pretraining (arXiv:2111.02358).

One multiway transformer (`_fusion_parts.Multiway`) wrapped around the zoo ViT: every block's
self-attention is shared by images, texts and fused pairs, while the feed-forward expert
switches by modality (the ViT's own MLP is the vision expert; the top `vl_layers` blocks add a
vision-language expert for fused sequences). The saved encoder is the plain ViT.

Stagewise pretraining (sec. 3.3) as fractions of the run's steps, each stage with its own
learning-rate warmup and cosine (`stage_starts`), as the paper's separate runs have:
1. image-only masked image modelling. VLMo predicts BEiT's dVAE codes; there is no tokenizer
   here, so masked patches (40%, BEiT block masking) regress their normalised pixels (MAE's
   target) through a linear head;
2. text-only MLM with the shared self-attention frozen (requires_grad off, so the trainer's
   optimiser sees no gradient for it and skips it; the vision path is unused);
3. image-text: ITC (in-batch, learnable temperature), ITM with hard negatives sampled by ITC
   similarity, and MLM on the fused sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vitbench.contract import Encoder
from vitbench.pretrain.losses import clip_loss, itm_loss, mae_loss, patchify
from vitbench.pretrain.masking import block_mask
from vitbench.pretrain.objectives._fusion_parts import Multiway, itm_pairs, mask_text, text_ids
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput


@dataclass
class MultiwayParams(Hyperparameters):
    """Fields shared by VLMo and BEiT-3 (the tiny model's text side and masking)."""

    temperature: float = 0.07
    mlm_prob: float = 0.15
    mim_ratio: float = 0.4  # BEiT block masking
    vl_layers: int = 2  # top blocks with a vision-language expert
    embed_dim: int = 64
    vocab_size: int = 4096
    context_length: int = 16


@dataclass
class VlmoParams(MultiwayParams):
    """VLMo (arXiv:2111.02358, sec. 4.1): AdamW with betas (0.9, 0.98), peak lr 2e-4, weight
    decay 0.01, batch 1024, 200k steps with 2.5k warmup (image-text stage); MIM 40% block
    masking, MLM 15%, ITC temperature learnable, VL-FFN in the top 2 of 12 layers (VLMo-Base).
    The stages are separate runs in the paper; here they are fractions of one run."""

    lr: float = 2e-4
    batch_size: int = 1024
    weight_decay: float = 0.01
    warmup_fraction: float = 2500 / 200_000
    betas: tuple[float, float] = (0.9, 0.98)
    # image-only MIM, then text-only MLM with attention frozen, the rest image-text: short
    # unimodal stages leave the image-text stage the steps it needs to leave the plateau they
    # put ITC on (tests/test_learns_fusion.py: 10% + 10% of 600 steps, kNN 0.57-0.62 on
    # digits; 5% + 5% of 800, 0.72-0.83)
    image_stage: float = 0.05
    text_stage: float = 0.05


class MultiwayObjective(Objective):
    """What VLMo and BEiT-3 share: the multiway model, its heads and the three losses."""

    needs = ("caption",)
    Params = MultiwayParams

    def __init__(self, encoder: Encoder, params: MultiwayParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        p, width = params, self.backbone.embed_dim
        self.multiway = Multiway(self.backbone, p.vocab_size, p.context_length, p.vl_layers)
        self.patch = self.backbone.patch_embed.patch_size[0]
        self.image_proj = nn.Linear(width, p.embed_dim)
        self.text_proj = nn.Linear(width, p.embed_dim)
        self.temp = nn.Parameter(torch.tensor(p.temperature))
        self.mlm_head = nn.Linear(width, p.vocab_size)
        self.mim_head = nn.Linear(width, self.patch * self.patch * 3)

    def _ids(self, texts: list[str]) -> Tensor:
        return text_ids(texts, self.params.vocab_size, self.params.context_length,
                        self.temp.device)

    def embed_image(self, pixels: Tensor) -> Tensor:
        return F.normalize(self.image_proj(self.features(pixels)).float(), dim=-1)

    def _embed_ids(self, ids: Tensor) -> Tensor:
        return F.normalize(self.text_proj(self.multiway(ids=ids)[:, 0]).float(), dim=-1)

    def embed_text(self, texts: list[str]) -> Tensor:
        return self._embed_ids(self._ids(texts))

    def _mask(self, pixels: Tensor) -> Tensor:
        grid = (pixels.shape[-2] // self.patch, pixels.shape[-1] // self.patch)
        return block_mask(len(pixels), grid, self.params.mim_ratio, device=pixels.device)

    def mim_loss(self, pixels: Tensor, states: Tensor, mask: Tensor) -> Tensor:
        """Normalised-pixel regression of the masked patches from the image part of `states`
        (the class token excluded)."""
        pred = self.mim_head(states[:, -mask.shape[1]:])
        return mae_loss(pred, patchify(pixels, self.patch), mask)

    def mlm_loss(self, states: Tensor, labels: Tensor) -> Tensor:
        logits = self.mlm_head(states[:, : labels.shape[1]])
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())

    def itc_loss(self, image: Tensor, text: Tensor) -> Tensor:
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        return clip_loss(image, text, 1 / self.temp)


class Vlmo(MultiwayObjective):
    name = "vlmo"
    Params = VlmoParams
    paper = "arXiv:2111.02358 (VLMo)"

    def __init__(self, encoder: Encoder, params: VlmoParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        self.itm_head = nn.Linear(self.backbone.embed_dim, 2)
        # fraction of the run done; float64 so that it equals stage_starts' s / total exactly
        self.register_buffer("progress", torch.zeros((), dtype=torch.float64))

    def stage_starts(self, total: int) -> tuple[int, ...]:
        names = [self._stage_at(s / total) for s in range(total)]
        return (0,) + tuple(s for s in range(1, total) if names[s] != names[s - 1])

    def stage(self) -> str:
        return self._stage_at(float(self.progress))

    def _stage_at(self, done: float) -> str:
        p = self.params
        if done < p.image_stage:
            return "image"
        return "text" if done < p.image_stage + p.text_stage else "image-text"

    def forward(self, batch: dict) -> StepOutput:
        stage = self.stage()
        for param in self.multiway.shared_attention():
            param.requires_grad_(stage != "text")
        pixels = batch["image"]
        if stage == "image":
            mask = self._mask(pixels)
            states = self.multiway(image=self.multiway.image_tokens(pixels, mask))
            loss = self.mim_loss(pixels, states, mask)
            return StepOutput(loss, {"mim": loss.detach()})
        ids = self._ids(batch["caption"])
        masked, labels = mask_text(ids, self.params.vocab_size, self.params.mlm_prob)
        if stage == "text":
            loss = self.mlm_loss(self.multiway(ids=masked), labels)
            return StepOutput(loss, {"mlm": loss.detach()})
        image, text = self.embed_image(pixels), self._embed_ids(ids)
        itc = self.itc_loss(image, text)
        tokens = self.multiway.image_tokens(pixels)
        pick_text, pick_image, b = itm_pairs(image, text, batch["caption"], self.temp.detach())
        fused = self.multiway(ids=ids[pick_text], image=tokens[pick_image])
        logits = self.itm_head(fused[:, 0])
        itm = itm_loss(logits[:b], logits[b:])
        mlm = self.mlm_loss(self.multiway(ids=masked, image=tokens), labels)
        return StepOutput(itc + itm + mlm, {"itc": itc.detach(), "itm": itm.detach(),
                                            "mlm": mlm.detach()})

    def after_step(self, step: int, total: int) -> None:
        self.progress.fill_((step + 1) / total)
