"""BLIP: bootstrapping language-image pretraining (arXiv:2201.12086), and its CapFilt.

BLIP keeps ALBEF's ITC (with momentum distillation) and ITM (hard negatives), but its text
encoder has cross-attention in *every* layer (skipped for the unimodal ITC pass), and it
replaces MLM with captioning: a causal decoder cross-attending to the image tokens, trained by
next-token cross-entropy. Deviations: the decoder has its own weights (BLIP shares everything
but self-attention with the encoder), no queues, no LM label smoothing.

CapFilt (sec. 3.3): the trained captioner writes a synthetic caption per image and the ITM
head filters both web and synthetic captions; the kept pairs are the new training set
(`vitbench.pretrain.capfilt` writes them as a CSV that the trainer reads). The hashed
vocabulary cannot be inverted, so decoding is greedy over a fixed word list built from the
training captions (`caption_vocabulary`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vitbench.pretrain.losses import caption_loss
from vitbench.pretrain.objectives._fusion_parts import (
    END,
    PAD,
    START,
    TextTransformer,
    image_states,
)
from vitbench.pretrain.objectives.albef import Albef, AlbefParams
from vitbench.pretrain.objectives.clip import hash_tokens


@dataclass
class BlipParams(AlbefParams):
    """BLIP (arXiv:2201.12086, sec. 4.1): AdamW, wd 0.05, lr warmed up to 3e-4 (ViT-B) and
    decayed (linearly, rate 0.85 per epoch; cosine here), batch 2880, 20 epochs; momentum
    0.995, queue 57,600, ITC temperature 0.07, distillation alpha 0.4."""

    lr: float = 3e-4
    min_lr: float = 0.0
    batch_size: int = 2880
    weight_decay: float = 0.05
    warmup_fraction: float = 0.01
    text_depth: int = 2  # encoder layers, each with cross-attention
    decoder_depth: int = 2


class Blip(Albef):
    name = "blip"
    needs = ("caption",)
    Params = BlipParams
    paper = "arXiv:2201.12086 (BLIP)"

    def _text_model(self, p: BlipParams) -> TextTransformer:
        return TextTransformer(p.vocab_size, p.text_width, p.text_heads, p.text_depth, 0,
                               p.context_length)

    def _build_heads(self, p: BlipParams) -> None:
        self.decoder = TextTransformer(p.vocab_size, p.text_width, p.text_heads,
                                       p.decoder_depth, 0, p.context_length, causal=True)
        self.lm_head = nn.Linear(p.text_width, p.vocab_size)

    def _unimodal(self, text: TextTransformer, ids: Tensor) -> Tensor:
        return text(ids, normed=False)  # every layer, cross-attention skipped

    def _fuse(self, ids: Tensor, states: Tensor, image: Tensor) -> Tensor:
        return self.text(ids, image=image)  # the image-grounded encoder: a pass of its own

    def lm_logits(self, ids: Tensor, image: Tensor) -> Tensor:
        """(B, L, V) next-token logits of the decoder on `ids` given projected image tokens."""
        return self.lm_head(self.decoder(ids, image=image))

    def _generative_loss(self, ids: Tensor, image: Tensor) -> tuple[str, Tensor]:
        return "lm", caption_loss(self.lm_logits(ids[:, :-1], image), ids[:, 1:], pad_id=PAD)


# --- CapFilt -----------------------------------------------------------------------------------
def caption_vocabulary(captions: Iterable[str], vocab_size: int) -> dict[int, str]:
    """hashed id -> word for every word of `captions` (the decodable vocabulary)."""
    words = sorted({w for c in captions for w in re.findall(r"[a-z0-9]+", c.lower())})
    ids = hash_tokens([" ".join(words)], vocab_size, len(words) + 2)[0, 1:-1].tolist()
    return dict(zip(ids, words, strict=True))


@torch.no_grad()
def generate(objective: Blip, pixels: Tensor, words: dict[int, str],
             max_words: int = 8) -> list[str]:
    """Greedy captions, each step choosing among `words` and the end token."""
    p = objective.params
    allowed = torch.tensor([*words, END], device=pixels.device)
    tokens = objective.cross_proj(image_states(objective.backbone, pixels)[1])
    ids = torch.full((len(pixels), 1), START, dtype=torch.long, device=pixels.device)
    done = torch.zeros(len(pixels), dtype=torch.bool, device=pixels.device)
    for _ in range(min(max_words, p.context_length - 2)):
        logits = objective.lm_logits(ids, tokens)[:, -1, allowed]
        step = allowed[logits.argmax(1)].masked_fill(done, PAD)
        ids = torch.cat([ids, step[:, None]], 1)
        done |= step == END
        if done.all():
            break
    return [" ".join(words[int(i)] for i in row[1:] if int(i) in words) for row in ids]


@torch.no_grad()
def itm_scores(objective: Blip, pixels: Tensor, captions: list[str]) -> Tensor:
    """P(match) of each (pixels[i], captions[i]) from the ITM head."""
    return F.softmax(objective.itm_logits(pixels, captions).float(), dim=1)[:, 1]


@dataclass
class CapFiltResult:
    pairs: list[tuple[int, str]]  # (image row, caption): the bootstrapped training set
    web_kept: Tensor  # (len(web),) bool: the filter kept that web pair
    synthetic: list[str]  # the captioner's caption per image
    synthetic_kept: Tensor  # (N,) bool


def capfilt(objective: Blip, pixels: Tensor, web: Sequence[tuple[int, str]],
            words: dict[int, str], threshold: float = 0.5, batch_size: int = 256
            ) -> CapFiltResult:
    """Caption every image of `pixels`, keep the web pairs (row of `pixels`, caption) and the
    synthetic captions whose ITM match probability is above `threshold`."""
    was_training = objective.training
    objective.eval()
    try:
        synthetic = [caption for start in range(0, len(pixels), batch_size)
                     for caption in generate(objective, pixels[start:start + batch_size], words)]
        web_kept = _pair_scores(objective, pixels, web, batch_size) > threshold
        # an empty synthetic caption (the captioner ended at once) is no pair to keep
        said = torch.tensor([bool(c) for c in synthetic], device=pixels.device)
        synthetic_kept = said & (_pair_scores(objective, pixels, list(enumerate(synthetic)),
                                              batch_size) > threshold)
    finally:
        objective.train(was_training)
    pairs = [pair for pair, kept in zip(web, web_kept.tolist(), strict=True) if kept]
    pairs += [(i, c) for i, c in enumerate(synthetic) if synthetic_kept[i]]
    return CapFiltResult(pairs, web_kept, synthetic, synthetic_kept)


def _pair_scores(objective: Blip, pixels: Tensor, pairs: Sequence[tuple[int, str]],
                 batch_size: int) -> Tensor:
    scores = [itm_scores(objective, pixels[[row for row, _ in pairs[start:start + batch_size]]],
                         [caption for _, caption in pairs[start:start + batch_size]])
              for start in range(0, len(pairs), batch_size)]
    return torch.cat(scores) if scores else torch.zeros(0)
