"""The visual tokenizers BEiT and BEiT v2 predict: one discrete code per student patch.

No pretrained tokenizer can be downloaded, so each objective trains its own on the run's data
during the first part of the run (see beit.py). Both tokenizers downsample by the student's
patch size, so their code grid is the student's patch grid.

- `DVAE` (BEiT, which used DALL-E's): a conv encoder gives per-patch logits over the codebook,
  a Gumbel-softmax relaxation picks codes, a conv decoder reconstructs the pixels; the loss is
  reconstruction MSE plus a KL to the uniform prior (DALL-E's ELBO, which keeps codes in use).
- `VQKD` (BEiT v2): a small transformer encoder, an l2-normalised (cosine) codebook with a
  straight-through estimator, and a decoder that reconstructs a teacher's patch features
  (cosine loss): the codes carry the teacher's semantics rather than pixels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class DVAE(nn.Module):
    def __init__(self, patch: int, codes: int, width: int = 64):
        super().__init__()
        self.codes = codes
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, padding=1), nn.GELU(),
            nn.Conv2d(width // 2, width, patch, stride=patch), nn.GELU(),
            nn.Conv2d(width, width, 1), nn.GELU(), nn.Conv2d(width, codes, 1))
        self.codebook = nn.Conv2d(codes, width, 1, bias=False)  # one-hot -> code vector
        self.decoder = nn.Sequential(
            nn.Conv2d(width, width, 1), nn.GELU(),
            nn.ConvTranspose2d(width, width // 2, patch, stride=patch), nn.GELU(),
            nn.Conv2d(width // 2, 3, 3, padding=1))

    @torch.no_grad()
    def tokens(self, pixels: Tensor) -> Tensor:
        """(B, N) code ids, row-major: the argmax of the encoder's logits."""
        return self.encoder(pixels).argmax(1).flatten(1)

    def loss(self, pixels: Tensor, temperature: float = 1.0,
             kl_weight: float = 0.01) -> tuple[Tensor, dict]:
        logits = self.encoder(pixels)  # (B, K, H, W)
        soft = F.gumbel_softmax(logits, tau=temperature, dim=1)
        recon = self.decoder(self.codebook(soft))
        log_q = F.log_softmax(logits, dim=1)
        kl = (log_q.exp() * (log_q + math.log(self.codes))).sum(1).mean()
        loss = F.mse_loss(recon, pixels) + kl_weight * kl
        return loss, {"tokenizer_recon": F.mse_loss(recon.detach(), pixels),
                      "code_perplexity": _perplexity(logits.argmax(1), self.codes)}


class VQKD(nn.Module):
    def __init__(self, patch: int, codes: int, target_dim: int, width: int = 64,
                 code_dim: int = 32, depth: int = 2, heads: int = 4, grid: int = 8):
        super().__init__()
        self.codes = codes
        self.stem = nn.Conv2d(3, width, patch, stride=patch)
        self.position = nn.Parameter(torch.randn(1, grid * grid, width) * 0.02)
        self.encoder = _transformer(width, depth, heads)
        self.to_code = nn.Linear(width, code_dim)
        self.codebook = nn.Parameter(F.normalize(torch.randn(codes, code_dim), dim=-1))
        self.register_buffer("initialised", torch.tensor(False))
        self.from_code = nn.Linear(code_dim, width)
        self.decoder = _transformer(width, 1, heads)
        self.to_target = nn.Linear(width, target_dim)

    def encode(self, pixels: Tensor) -> Tensor:
        """(B, N, code_dim) l2-normalised patch codes before quantisation."""
        x = self.stem(pixels).flatten(2).transpose(1, 2)
        x = self.encoder(x + self.position[:, : x.shape[1]])
        return F.normalize(self.to_code(x), dim=-1)

    def quantise(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest code by cosine: (ids (B, N), code vectors (B, N, code_dim))."""
        book = F.normalize(self.codebook, dim=-1)
        ids = (z @ book.T).argmax(-1)
        return ids, book[ids]

    @torch.no_grad()
    def tokens(self, pixels: Tensor) -> Tensor:
        return self.quantise(self.encode(pixels))[0]

    def loss(self, pixels: Tensor, target: Tensor,
             commitment: float = 0.25) -> tuple[Tensor, dict]:
        z = self.encode(pixels)
        if not bool(self.initialised):  # codes start on data, so none begins dead
            with torch.no_grad():
                rows = z.reshape(-1, z.shape[-1])
                pick = torch.randint(len(rows), (self.codes,), device=rows.device)
                self.codebook.copy_(rows[pick] + 0.01 * torch.randn_like(rows[pick]))
                self.initialised.fill_(True)
        ids, q = self.quantise(z)
        codebook_loss = F.mse_loss(q, z.detach()) + commitment * F.mse_loss(z, q.detach())
        q = z + (q - z).detach()  # straight-through
        recon = self.to_target(self.decoder(self.from_code(q)))
        cosine = F.cosine_similarity(recon.float(), target.float(), dim=-1).mean()
        return (1 - cosine) + codebook_loss, {"tokenizer_cos": cosine.detach(),
                                              "code_perplexity": _perplexity(ids, self.codes)}


def _transformer(width: int, depth: int, heads: int) -> nn.Module:
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def _perplexity(ids: Tensor, codes: int) -> Tensor:
    """exp(entropy) of the batch's code histogram: how many codes are effectively used."""
    p = torch.bincount(ids.flatten(), minlength=codes).float()
    p = p / p.sum()
    return torch.exp(-(p * (p + 1e-10).log()).sum()).detach()
