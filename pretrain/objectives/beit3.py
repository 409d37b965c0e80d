"""BEiT-3: masked data modelling with a multiway transformer (arXiv:2208.10442).

The same multiway model as VLMo (shared self-attention, per-modality feed-forward experts,
vision-language experts in the top blocks), trained with one task on three kinds of data each
step: masked images (40% block masking), masked monomodal texts (15% of tokens; here the
captions stand in for a text corpus) and masked image-text pairs (50% of the text tokens and
40% of the patches, predicted from both modalities).

Deviations: BEiT-3 predicts the masked patches' BEiT v2 tokenizer codes; no tokenizer can be
loaded here, so masked patches regress their normalised pixels (MAE's target) through a linear
head. BEiT-3 pretraining has no joint embedding space (retrieval is fine-tuned with ITC
afterwards), so `embed_image`/`embed_text` come from a small auxiliary ITC head on the pooled
image features and the text [CLS] state, trained alongside with weight `itc_weight`
(0 turns it off; then the zero-shot numbers are meaningless).
"""

from __future__ import annotations

from dataclasses import dataclass

from vitbench.pretrain.objectives._fusion_parts import mask_text
from vitbench.pretrain.objectives.base import StepOutput
from vitbench.pretrain.objectives.vlmo import MultiwayObjective, MultiwayParams


@dataclass
class Beit3Params(MultiwayParams):
    """BEiT-3 (arXiv:2208.10442, sec. 2.3 and appendix): AdamW betas (0.9, 0.98), eps 1e-6,
    cosine lr peaking at 2e-3 after 10k warmup steps of 1M, weight decay 0.05, batch 6144
    (2048 images, 2048 texts, 2048 pairs); 15% of monomodal text tokens, 50% of pair text
    tokens and 40% of image patches (block-wise) masked; VL experts in the top 3 layers."""

    lr: float = 2e-3
    batch_size: int = 6144
    weight_decay: float = 0.05
    warmup_fraction: float = 10_000 / 1_000_000
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float | None = 3.0
    pair_mlm_prob: float = 0.5
    itc_weight: float = 1.0  # auxiliary (not BEiT-3's): the joint space for zero-shot


class Beit3(MultiwayObjective):
    name = "beit3"
    Params = Beit3Params
    paper = "arXiv:2208.10442 (BEiT-3)"

    def forward(self, batch: dict) -> StepOutput:
        p, pixels, mw = self.params, batch["image"], self.multiway
        ids = self._ids(batch["caption"])

        mask = self._mask(pixels)  # images
        mim = self.mim_loss(pixels, mw(image=mw.image_tokens(pixels, mask)), mask)

        masked, labels = mask_text(ids, p.vocab_size, p.mlm_prob)  # texts
        mlm = self.mlm_loss(mw(ids=masked), labels)

        pair_mask = self._mask(pixels)  # pairs: both modalities masked, predicted jointly
        pair_ids, pair_labels = mask_text(ids, p.vocab_size, p.pair_mlm_prob)
        states = mw(ids=pair_ids, image=mw.image_tokens(pixels, pair_mask))
        pair = self.mlm_loss(states, pair_labels) + self.mim_loss(pixels, states, pair_mask)

        loss = mim + mlm + pair
        metrics = {"mim": mim.detach(), "mlm": mlm.detach(), "pair": pair.detach()}
        if p.itc_weight:
            itc = self.itc_loss(self.embed_image(pixels), self._embed_ids(ids))
            loss = loss + p.itc_weight * itc
            metrics["itc"] = itc.detach()
        return StepOutput(loss, metrics)
