"""BEiT-3: one Multiway Transformer for images, texts and image-text pairs.

Wang et al., "Image as a Foreign Language: BEiT Pretraining for All Vision and Vision-Language
Tasks", arXiv:2208.10442. Official code: microsoft/unilm beit3/ (modeling_utils.py,
modeling_finetune.py) on torchscale 0.2.0 (model/BEiT3.py, architecture/encoder.py,
component/multiway_network.py, multihead_attention.py, feedforward_network.py, embedding.py).

What the released base/large models are, as torchscale builds them (checked in its source):

- Every LayerNorm and Linear of a block is a Multiway pair: expert A reads the image tokens,
  expert B the text tokens. torchscale wraps the attention's q/k/v/out projections too, so
  nothing in a block is shared between modalities (the released models have no VL experts).
- Magneto "sub-LN" (EncoderConfig's default subln=True, not overridden for base/large):
  pre-LN blocks, plus a LayerNorm on the attention output before out_proj (inner_attn_ln) and
  one on the FFN hidden after GELU (ffn_layernorm). Exact GELU, LayerNorm eps 1e-5.
- A final Multiway LayerNorm (normalize_output=True for retrieval and the pretrained models).
- Learned absolute positions, one table per modality, indexed from 2 as fairseq does: rows 0
  and 1 are never read, so `convert` drops them and `image_pos`/`text_pos` start at row 0.
- Image embedding: a stride-16 convolution and a prepended class token; no embedding norm and
  no embedding scale (no_scale_embedding=True). Text embedding: a plain lookup table.
- Retrieval / ITC heads: bias-free Linear(D, D) on the class token after the final norm
  (vision_head, language_head); the official model L2-normalises their outputs.

This module is the BEiT3ForRetrieval model (the `*_itc_*` and `*_retrieval` checkpoints):
`forward_image` runs the vision-expert path only and returns pooled = the class token after the
final norm (what vision_head reads), tokens = the patch tokens after it, projected =
vision_head(pooled), unnormalised (the retrieval protocols normalise).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.contract import ImageFeatures, LayerOutput
from vitbench.errors import VitbenchError
from vitbench.zoo.adapters.timm import block_indices
from vitbench.zoo.reference.base import ReferenceModel

FAIRSEQ_OFFSET = 2  # torchscale's position tables start at row 2; rows 0 and 1 are never read
TOKENIZER_FILES = "beit3.spm (with sentencepiece installed) or a saved tokenizer.json"


class Multiway(nn.Module):
    """Two copies of a module: `image` for the first `n_image` tokens, `text` for the rest."""

    def __init__(self, make: Callable[[], nn.Module]):
        super().__init__()
        self.image, self.text = make(), make()

    def forward(self, x: torch.Tensor, n_image: int) -> torch.Tensor:
        if n_image >= x.shape[1]:
            return self.image(x)
        if n_image == 0:
            return self.text(x)
        return torch.cat([self.image(x[:, :n_image]), self.text(x[:, n_image:])], dim=1)


class MultiwayAttention(nn.Module):
    """Self-attention over the whole sequence with per-modality projections (and sub-LN)."""

    def __init__(self, dim: int, heads: int, subln: bool, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.proj = (Multiway(lambda: nn.Linear(dim, dim))
                                             for _ in range(4))
        self.norm = Multiway(lambda: nn.LayerNorm(dim, eps=eps)) if subln else None

    def forward(self, x: torch.Tensor, n_image: int,
                padding: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = (heads(p(x, n_image)) for p in (self.q, self.k, self.v))
        keep = None if padding is None else ~padding[:, None, None, :]  # True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        out = out.transpose(1, 2).reshape(b, n, d)
        if self.norm is not None:
            out = self.norm(out, n_image)
        return self.proj(out, n_image)


class FeedForward(nn.Module):
    """fc1 -> GELU -> (sub-LN) -> fc2: one expert of the Multiway FFN."""

    def __init__(self, dim: int, hidden: int, subln: bool, eps: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps) if subln else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(F.gelu(self.fc1(x))))


class MultiwayBlock(nn.Module):
    """Pre-LN transformer block whose every parameter has an image and a text expert."""

    def __init__(self, dim: int, heads: int, hidden: int, subln: bool, eps: float):
        super().__init__()
        self.norm1 = Multiway(lambda: nn.LayerNorm(dim, eps=eps))
        self.attn = MultiwayAttention(dim, heads, subln, eps)
        self.norm2 = Multiway(lambda: nn.LayerNorm(dim, eps=eps))
        self.mlp = Multiway(lambda: FeedForward(dim, hidden, subln, eps))

    def forward(self, x: torch.Tensor, n_image: int,
                padding: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x, n_image), n_image, padding)
        return x + self.mlp(self.norm2(x, n_image), n_image)


class BEiT3(ReferenceModel):
    """BEiT-3 retrieval model (Multiway encoder + ITC heads), plain torch.

    Args:
        img_size, patch_size: input resolution and patch stride of the image embedding.
        embed_dim, depth, num_heads, mlp_ratio: the Multiway encoder.
        vocab_size: text embedding rows (64010 for the released sentencepiece vocabulary).
        max_text_positions: text position rows read (torchscale's 1024 minus the offset 2).
        subln: Magneto sub-LN (True for the released models).
        text_max_length: tokens per text, as the official retrieval data (64, bos/eos included).
        tokenizer: a callable Hugging Face tokenizer (XLM-R sentencepiece), or None.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 vocab_size: int = 64010, max_text_positions: int = 1024 - FAIRSEQ_OFFSET,
                 subln: bool = True, eps: float = 1e-5, text_max_length: int = 64,
                 tokenizer: Any = None):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.text_max_length, self.tokenizer = text_max_length, tokenizer
        self.tokenizer_problem = ""  # why the weights directory gave no tokenizer, if it did not
        grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.image_pos = nn.Parameter(torch.zeros(grid * grid + 1, embed_dim))
        self.text_embed = nn.Embedding(vocab_size, embed_dim)
        self.text_pos = nn.Parameter(torch.zeros(max_text_positions, embed_dim))
        hidden = int(embed_dim * mlp_ratio)
        self.blocks = nn.ModuleList(MultiwayBlock(embed_dim, num_heads, hidden, subln, eps)
                                    for _ in range(depth))
        self.norm = Multiway(lambda: nn.LayerNorm(embed_dim, eps=eps))
        self.image_proj = nn.Linear(embed_dim, embed_dim, bias=False)  # official vision_head
        self.text_proj = nn.Linear(embed_dim, embed_dim, bias=False)  # official language_head
        self.apply(_init_weights)
        for p in (self.cls_token, self.image_pos, self.text_pos):
            nn.init.trunc_normal_(p, std=0.02)

    # -- image ---------------------------------------------------------------------------

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + N, D): class token + patches, plus image positions."""
        if pixels.shape[-2:] != (self.img_size, self.img_size):
            raise VitbenchError(f"BEiT-3 was built for {self.img_size} px inputs, got "
                                f"{tuple(pixels.shape[-2:])} (load with resolution= to change)")
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.image_pos

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        x = self.embed_image(pixels)
        n = x.shape[1]  # every token is an image token: expert A throughout
        wanted = set(block_indices("beit3", len(self.blocks), layers))
        by_block = {}
        for i, block in enumerate(self.blocks):
            x = block(x, n)
            if i in wanted:
                by_block[i] = self.norm(x, n)
        x = self.norm(x, n)
        pooled = x[:, 0]
        outputs = tuple(LayerOutput(i, by_block[i % len(self.blocks)][:, 0],
                                    by_block[i % len(self.blocks)][:, 1:]) for i in layers)
        return ImageFeatures(pooled=pooled, tokens=x[:, 1:], projected=self.image_proj(pooled),
                             layers=outputs)

    # -- text ----------------------------------------------------------------------------

    def encode_ids(self, input_ids: torch.Tensor,
                   padding: torch.Tensor | None = None) -> torch.Tensor:
        """Text tokens after the final norm, language experts throughout.

        Args:
            input_ids: (B, L) ids with bos/eos, as the official data pipeline makes them.
            padding: (B, L) True at padding positions (torchscale's text_padding_position).
        """
        x = self._embed_text(input_ids, padding)
        for block in self.blocks:
            x = block(x, 0, padding)
        return self.norm(x, 0)

    def forward_text(self, texts: Sequence[str]) -> torch.Tensor:
        """language_head(class token): the joint-space text embedding, unnormalised."""
        if self.tokenizer is None:
            raise VitbenchError(self.tokenizer_problem or (
                f"BEiT-3 text encoding needs its XLM-R sentencepiece tokenizer: put "
                f"{TOKENIZER_FILES} in the weights directory, or model.set_tokenizer(...)"))
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.text_max_length, return_tensors="pt")
        device = self.text_embed.weight.device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        if int(ids.max()) >= self.text_embed.num_embeddings:
            raise VitbenchError(f"this tokenizer gives id {int(ids.max())}, beyond BEiT-3's "
                                f"{self.text_embed.num_embeddings}-token vocabulary")
        return self.text_proj(self.encode_ids(ids, mask == 0)[:, 0])

    def _embed_text(self, input_ids: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        if input_ids.shape[1] > self.text_pos.shape[0]:
            raise VitbenchError(f"BEiT-3 reads at most {self.text_pos.shape[0]} text tokens, "
                                f"got {input_ids.shape[1]}")
        x = self.text_embed(input_ids) + self.text_pos[: input_ids.shape[1]]
        if padding is not None:  # torchscale zeroes padded embeddings before the first block
            x = x * (~padding).unsqueeze(-1).to(x.dtype)
        return x

    # -- image and text together (VQA / NLVR2-style fusion) -------------------------------

    def forward_fusion(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                       padding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1 + N + L, D): image tokens then text tokens, each through its own experts,
        attending to each other (the deep-fusion path of the VQA/NLVR2 models)."""
        image = self.embed_image(pixels)
        x = torch.cat([image, self._embed_text(input_ids, padding)], dim=1)
        if padding is not None:
            padding = torch.cat([padding.new_zeros(image.shape[:2]), padding], dim=1)
        n = image.shape[1]
        for block in self.blocks:
            x = block(x, n, padding)
        return self.norm(x, n)

    # -- weights -------------------------------------------------------------------------

    def image_tower(self) -> nn.Module:
        """The image tower's parameters (what params_m counts): image embedding, positions,
        every image expert and the final image norm; the projection head (image_proj) and
        everything of the text side excluded."""
        return nn.ParameterList(p for name, p in self.named_parameters()
                                if name.startswith(("patch_embed.", "cls_token", "image_pos"))
                                or ".image." in name)

    def set_tokenizer(self, tokenizer: Any) -> None:
        """A Hugging Face tokenizer, or a directory holding beit3.spm / tokenizer files."""
        if isinstance(tokenizer, str | os.PathLike):
            tokenizer = _tokenizer_from_dir(Path(tokenizer))
            if tokenizer is None:
                raise VitbenchError(f"no BEiT-3 tokenizer in that directory (expected "
                                    f"{TOKENIZER_FILES})")
        self.tokenizer = tokenizer

    def use_weights_dir(self, path: Path) -> None:
        """Loader hook: the tokenizer that ships beside the weights, if there is one (an
        explicit tokenizer wins)."""
        if self.tokenizer is None:
            path = Path(path)
            try:
                self.tokenizer = _tokenizer_from_dir(path if path.is_dir() else path.parent)
            except VitbenchError as exc:  # the image side still loads; say why on text
                self.tokenizer_problem = str(exc)

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resample the image position table to this model's grid, as the official
        load_model_and_may_interpolate does (class row kept, patch grid bicubic)."""
        pos = state.get("image_pos")
        if pos is None or pos.shape == self.image_pos.shape:
            return state
        old, new = int((pos.shape[0] - 1) ** 0.5), self.img_size // self.patch_size
        grid = pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).flatten(0, 2).to(pos.dtype)
        return {**state, "image_pos": torch.cat([pos[:1], grid])}

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official BEiT3ForRetrieval keys (beit3.encoder.layers.N.self_attn.q_proj.A.weight,
        beit3.encoder.layers.N.ffn.A.fc1.weight, vision_head.weight, ...) -> this module's.

        Dropped: beit3.vision_embed.mask_token (masked-image pretraining only), logit_scale
        (the contrastive loss's temperature), and position rows 0-1 (never read). Keys already
        in this module's layout pass through, so vitbench's own safetensors load as they are.
        """
        if not any(k.startswith("beit3.") for k in state):
            return state
        out = {}
        for key, value in state.items():
            if key in ("beit3.vision_embed.mask_token", "logit_scale"):
                continue
            new = _rename(key)
            if new in ("image_pos", "text_pos"):
                value = value[FAIRSEQ_OFFSET:]
            out[new] = value
        return out


_RENAMES = (  # applied in order, after the "beit3." prefix is gone; expert letters last
    ("vision_embed.proj.", "patch_embed."),
    ("vision_embed.cls_token", "cls_token"),
    ("encoder.embed_positions.A.weight", "image_pos"),
    ("encoder.embed_positions.B.weight", "text_pos"),
    ("encoder.layers.", "blocks."),
    ("encoder.layer_norm.", "norm."),
    ("self_attn_layer_norm.", "norm1."),
    ("final_layer_norm.", "norm2."),
    ("self_attn.inner_attn_ln.", "attn.norm."),
    ("self_attn.q_proj.", "attn.q."),
    ("self_attn.k_proj.", "attn.k."),
    ("self_attn.v_proj.", "attn.v."),
    ("self_attn.out_proj.", "attn.proj."),
    ("ffn.", "mlp."),
    ("ffn_layernorm.", "norm."),
    ("vision_head.", "image_proj."),
    ("language_head.", "text_proj."),
    (".A.", ".image."),
    (".B.", ".text."),
)


def _rename(key: str) -> str:
    key = key.removeprefix("beit3.")
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return key


def _init_weights(module: nn.Module) -> None:
    """BEiT3Wrapper._init_weights: truncated normal linears, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=module.embedding_dim ** -0.5)


def _tokenizer_from_dir(directory: Path):
    """A saved Hugging Face tokenizer, else the official beit3.spm; None when neither is here.

    The official code reads beit3.spm with XLMRobertaTokenizer; transformers converts a
    sentencepiece model only under XLM-R's file name and only with the sentencepiece package,
    so the file is read through a temporary copy under that name, and a missing package (or an
    unreadable file) is a one-line error rather than a silently wrong vocabulary.
    """
    from transformers import AutoTokenizer, XLMRobertaTokenizer

    if not directory.is_dir():
        return None
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError):  # no saved tokenizer here: look for the official file
        pass
    spm = directory / "beit3.spm"
    if not spm.is_file():
        logging.getLogger(__name__).info("no BEiT-3 tokenizer in %s", directory)
        return None
    if importlib.util.find_spec("sentencepiece") is None:
        raise VitbenchError(f"reading {spm} needs the sentencepiece package (pip install "
                            "sentencepiece), or a tokenizer saved with save_pretrained beside "
                            "the weights")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(spm, Path(tmp) / "sentencepiece.bpe.model")
        try:
            tokenizer = XLMRobertaTokenizer.from_pretrained(tmp, local_files_only=True)
        except Exception as exc:  # conversion failures come in many types
            raise VitbenchError(f"cannot read {spm} as a sentencepiece model "
                                f"({type(exc).__name__})") from exc
    if len(tokenizer) <= 5:  # XLM-R's empty default vocabulary: the file was not read
        raise VitbenchError(f"cannot read {spm} as a sentencepiece model")
    return tokenizer
