"""MoDE: CLIP data experts via clustering (arXiv:2404.16030, MetaCLIP's MoDE).

The captions are clustered, one CLIP model (image tower, text tower, temperature) is trained
per cluster on only that cluster's pairs, and at inference the experts are ensembled with
weights from how close the test text is to each cluster centre. Clustering separates
confusable "false negatives" (pairs with near-identical captions) into different experts'
batches and cuts the negatives each expert must push apart to the ones that share its topic.

Choices here (the objective never sees the dataset, only batches):
- Caption embedding: a hashed bag of words (crc32 of each word mod `cluster_features`,
  L2-normalised), a fixed function of the text, so routing after loading needs no fitted
  vocabulary. The paper embeds captions with a pretrained text encoder.
- Clustering: k-means (scikit-learn) with `experts` centres, fitted once on the captions of
  the first training batch and kept in a buffer (checkpointed with the weights, broadcast from
  rank 0 under DDP). The paper clusters the whole caption pool offline, in two steps (fine
  k-means, then the fine centres into the meta-clusters).
- Experts: each has its own image and text tower, all initialised identically (the paper's
  experts start from a shared seed model); the loss is the mean of the non-empty clusters'
  CLIP losses. Compute per step equals one CLIP: each image goes through one expert.
- The run directory saves expert 0's image tower (one image model per entry).
- Routing: a text's weights are softmax(cos(text, centres) / route_temperature); images carry
  no text, so every expert embeds them. embed_image concatenates the experts' normalised
  embeddings / sqrt(E) (unit norm); embed_text concatenates sqrt(E) * w_e * text_e, so
  image . text = sum_e w_e(text) cos_e(image, text), the routed ensemble of the experts' zero-
  shot scores. That text vector's norm is sqrt(E) * |w| (1 for uniform weights), not 1.
On the digits captions the clusters follow the three phrasings ("the number 3" versus "a
handwritten digit three" / "a scan of a handwritten three"), not the digit classes: every
expert sees every digit, with one phrasing.
"""

from __future__ import annotations

import copy
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
from vitbench.pretrain.objectives.base import Objective, StepOutput
from vitbench.pretrain.objectives.clip import ClipParams, TextTower, gather_with_grad


@dataclass
class ModeParams(ClipParams):
    """MoDE (arXiv:2404.16030, Sec. 3-4): each expert trains with MetaCLIP's CLIP recipe
    (ViT-B/32: batch 32k, lr 5e-4, AdamW betas (0.9, 0.98), eps 1e-6, wd 0.2, temperature
    0.07 capped at 100), 4 data experts (MoDE-4, the paper's main setting; it also reports
    2-32), ensembled by softmax over caption-centre similarity. `route_temperature` and
    `cluster_features` belong to this repo's bag-of-words stand-in for the paper's text
    embedding."""

    experts: int = 4
    cluster_features: int = 256
    route_temperature: float = 0.1


def bag_of_words(texts: list[str], features: int) -> torch.Tensor:
    """(B, features) L2-normalised counts of crc32-hashed lower-case words."""
    out = torch.zeros(len(texts), features)
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            out[row, zlib.crc32(word.encode()) % features] += 1
    return F.normalize(out, dim=-1)


def kmeans_centres(points: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """(k, D) L2-normalised k-means centres of `points` (duplicated if fewer distinct rows)."""
    from sklearn.cluster import KMeans

    distinct = points.unique(dim=0)
    if len(distinct) < k:  # tiny batches: repeat rows so k-means can still return k centres
        distinct = distinct.repeat(math.ceil(k / len(distinct)), 1)
    fit = KMeans(k, n_init=10, random_state=seed).fit(distinct.double().numpy())
    return F.normalize(torch.from_numpy(fit.cluster_centers_).float(), dim=-1)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Like gather_with_grad, for per-rank row counts that differ (padded, then dropped)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    count = torch.tensor([len(x)], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    most = int(max(c.item() for c in counts))
    padded = torch.cat([x, x.new_zeros(most - len(x), *x.shape[1:])])
    rows = gather_with_grad(padded).split(most)
    return torch.cat([r[: int(c.item())] for r, c in zip(rows, counts, strict=True)])


class Mode(Objective):
    name = "mode"
    needs = ("caption",)
    Params = ModeParams
    paper = "arXiv:2404.16030 (MoDE)"

    def __init__(self, encoder: Encoder, params: ModeParams, num_classes: int = 0):
        super().__init__(encoder, params, num_classes)
        copies = [copy.deepcopy(encoder) for _ in range(params.experts - 1)]
        self._experts = [encoder, *copies]  # adapters; expert 0's model is self.backbone
        self.other_backbones = nn.ModuleList(c.modules()[0] for c in copies)
        self.image_proj = nn.ModuleList(nn.Linear(self.feature_dim, params.embed_dim,
                                                  bias=False) for _ in self._experts)
        text = TextTower(params)
        self.text = nn.ModuleList(copy.deepcopy(text) for _ in self._experts)
        self.logit_scale = nn.Parameter(torch.full((params.experts,),
                                                   math.log(1 / params.init_temperature)))
        self.register_buffer("centres", torch.zeros(params.experts, params.cluster_features))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def cluster(self, texts: list[str]) -> torch.Tensor:
        """(B, E) cosine similarity of each text's bag of words to the cluster centres."""
        bags = bag_of_words(texts, self.params.cluster_features).to(self.centres.device)
        return bags @ self.centres.T

    def _fit(self, texts: list[str]) -> None:
        centres = kmeans_centres(bag_of_words(texts, self.params.cluster_features),
                                 self.params.experts).to(self.centres.device)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(centres, 0)
        self.centres.copy_(centres)
        self.fitted.fill_(True)

    def _image(self, e: int, pixels: torch.Tensor) -> torch.Tensor:
        pooled = self._experts[e]._forward(pixels).pooled
        return F.normalize(self.image_proj[e](pooled).float(), dim=-1)

    def _text(self, e: int, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text[e](texts).float(), dim=-1)

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        experts = len(self._experts)
        return torch.cat([self._image(e, pixels) for e in range(experts)], 1) / experts**0.5

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        weights = (self.cluster(texts) / self.params.route_temperature).softmax(1)
        experts = len(self._experts)
        return torch.cat([weights[:, e, None] * self._text(e, texts) * experts**0.5
                          for e in range(experts)], 1)

    def forward(self, batch: dict) -> StepOutput:
        captions = batch["caption"]
        if not self.fitted:
            self._fit(captions)
        assigned = self.cluster(captions).argmax(1)
        losses = []
        for e in range(len(self._experts)):
            rows = (assigned == e).nonzero()[:, 0]
            if len(rows):
                image = self._image(e, batch["image"][rows])
                text = self._text(e, [captions[i] for i in rows.tolist()])
            else:  # no pairs here; other ranks may have some (gather_rows needs everyone)
                image = text = self.centres.new_zeros(0, self.params.embed_dim)
            image, text = gather_rows(image), gather_rows(text)
            if len(image) >= 2:  # one pair alone has no negatives
                scale = self.logit_scale[e].exp()
                losses.append(clip_loss(image, text, scale))
        loss = torch.stack(losses).mean() if losses else self.logit_scale.sum() * 0
        counts = torch.bincount(assigned, minlength=len(self._experts)).float()
        return StepOutput(loss, {"largest_cluster": counts.max() / len(captions)})

    def after_step(self, step: int, total: int) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(0, math.log(self.params.max_logit_scale))
