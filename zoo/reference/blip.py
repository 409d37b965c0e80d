"""BLIP retrieval model (ViT image encoder, BERT text encoder with cross-attention, ITC + ITM).

Li et al., "BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language
Understanding and Generation", arXiv:2201.12086; official code salesforce/BLIP
(models/blip_retrieval.py, blip_itm.py, vit.py, med.py). transformers carries the architecture
(BlipForImageTextRetrieval), so this wrapper builds its parts from a BlipConfig dict and owns
them under transformers' own names: vitbench's key layout *is* transformers' layout, and a
save_pretrained directory or the hub's Salesforce/blip-itm-*-coco weights load unchanged.
`convert` maps the official checkpoints (model_*_retrieval_coco.pth, model_*.pth) onto it.

Features (the official retrieval evaluation reads the same tensors):
- pooled: the image class token after the ViT's final LayerNorm (what vision_proj reads).
  transformers' `pooler_output` applies that LayerNorm a second time; it is not used here.
- tokens: the patch tokens after that LayerNorm (what the ITM cross-attention reads).
- projected: vision_proj(pooled), 256-d, unnormalised (the official code L2-normalises).
- forward_text: text_proj of the unimodal text encoder's [CLS], unnormalised.
- itm_scores: the ITM head's match probability for (image, text) pairs. The official
  retrieval model fine-tuned and evaluates ITM with the first token replaced by [ENC]
  (train_retrieval.py); transformers' BlipForImageTextRetrieval and the blip_itm demo keep
  [CLS] (huggingface/transformers#25629). `enc_token=True` (default) follows the former.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitbench.contract import ImageFeatures, LayerOutput
from vitbench.errors import VitbenchError
from vitbench.zoo.adapters.timm import block_indices
from vitbench.zoo.reference.base import ReferenceModel

TOKENIZER_FILES = ("BLIP's BERT WordPiece tokenizer (vocab.txt or tokenizer.json, with "
                   "tokenizer_config.json, as in the Salesforce/blip-itm-*-coco repos)")
ENC_TOKEN = "[ENC]"


class BlipRetrieval(ReferenceModel):
    """BLIP's image-text retrieval model, with transformers' modules and parameter names.

    Args:
        config: a BlipConfig dict (vision_config, text_config, image_text_hidden_size, ...).
        img_size: the loader's resolution override. Nothing depends on it: an input of
            another size than the config's image_size runs with the position embeddings
            interpolated on the fly (transformers' interpolate_pos_encoding, bicubic).
        text_max_length: tokens per text (35 in the official retrieval code).
        enc_token_id: id of [ENC] for ITM when the tokenizer does not name it (30523 in the
            official vocabulary: bert-base-uncased + [DEC] + [ENC]).
        tokenizer: a callable Hugging Face tokenizer, or None.
    """

    def __init__(self, config: dict, img_size: int | None = None, text_max_length: int = 35,
                 enc_token_id: int | None = None, tokenizer: Any = None):
        super().__init__()
        from transformers import BlipConfig, BlipForImageTextRetrieval

        full = BlipForImageTextRetrieval(BlipConfig(**config))
        self.vision_model, self.text_encoder = full.vision_model, full.text_encoder
        self.vision_proj, self.text_proj, self.itm_head = (full.vision_proj, full.text_proj,
                                                           full.itm_head)
        self.native_size = full.config.vision_config.image_size
        self.text_max_length, self.enc_token_id = text_max_length, enc_token_id
        self.tokenizer = tokenizer

    # -- image ---------------------------------------------------------------------------

    def _vision(self, pixels: torch.Tensor, hidden_states: bool = False):
        other_size = tuple(pixels.shape[-2:]) != (self.native_size, self.native_size)
        return self.vision_model(pixel_values=pixels, interpolate_pos_encoding=other_size,
                                 output_hidden_states=hidden_states)

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        out = self._vision(pixels, hidden_states=bool(layers))
        hidden = out.last_hidden_state  # after post_layernorm
        pooled = hidden[:, 0]
        depth = len(self.vision_model.encoder.layers)
        block_indices("blip", depth, layers)  # one-line error for out-of-range indices
        outputs = []
        for i in layers:  # hidden_states[0] is the embedding output, [i + 1] block i's
            normed = self.vision_model.post_layernorm(out.hidden_states[i % depth + 1])
            outputs.append(LayerOutput(i, normed[:, 0], normed[:, 1:]))
        return ImageFeatures(pooled=pooled, tokens=hidden[:, 1:],
                             projected=self.vision_proj(pooled), layers=tuple(outputs))

    # -- text ----------------------------------------------------------------------------

    def forward_text(self, texts: Sequence[str]) -> torch.Tensor:
        """text_proj of the unimodal text encoder's [CLS] (BLIP's ITC text embedding)."""
        ids, mask = self._tokenize(texts)
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        return self.text_proj(out.last_hidden_state[:, 0])

    def itm_logits(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, 2) ITM logits: text i cross-attending to image i's tokens ([no, yes])."""
        image = self._vision(pixels).last_hidden_state
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        out = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                encoder_hidden_states=image, encoder_attention_mask=image_mask)
        return self.itm_head(out.last_hidden_state[:, 0])

    def itm_scores(self, pixels: torch.Tensor, texts: Sequence[str],
                   enc_token: bool = True) -> torch.Tensor:
        """(B,) probability that text i matches image i (softmax of the ITM head, class 1).

        Args:
            pixels: (B, 3, H, W) preprocessed images.
            texts: B captions, paired with the images row by row.
            enc_token: replace the first token by [ENC], as the official retrieval model was
                fine-tuned and evaluated; False keeps [CLS], as transformers' pipeline does.
        """
        if len(texts) != pixels.shape[0]:
            raise VitbenchError(f"itm_scores pairs images and texts row by row: got "
                                f"{pixels.shape[0]} images and {len(texts)} texts")
        ids, mask = self._tokenize(texts)
        if enc_token:
            ids = ids.clone()
            ids[:, 0] = self._enc_token_id()
        return self.itm_logits(pixels, ids, mask).softmax(dim=-1)[:, 1]

    def _tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokenizer is None:
            raise VitbenchError(f"BLIP text encoding needs {TOKENIZER_FILES} in the weights "
                                "directory, or pass tokenizer=")
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.text_max_length, return_tensors="pt")
        device = self.text_proj.weight.device
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)

    def _enc_token_id(self) -> int:
        vocab = self.tokenizer.get_vocab()
        if ENC_TOKEN in vocab:
            return vocab[ENC_TOKEN]
        if self.enc_token_id is None:
            raise VitbenchError("this tokenizer has no [ENC] token and the model names no "
                                "enc_token_id; use itm_scores(..., enc_token=False)")
        return self.enc_token_id

    # -- weights -------------------------------------------------------------------------

    def image_tower(self) -> nn.Module:
        """The image tower (what params_m counts): the ViT, without vision_proj."""
        return self.vision_model

    def set_tokenizer(self, tokenizer: Any) -> None:
        """A Hugging Face tokenizer, or a directory holding its files."""
        if isinstance(tokenizer, str | os.PathLike):
            tokenizer = _tokenizer_from_dir(Path(tokenizer))
            if tokenizer is None:
                raise VitbenchError(f"no tokenizer in that directory (expected {TOKENIZER_FILES})")
        self.tokenizer = tokenizer

    def use_weights_dir(self, path: Path) -> None:
        """Loader hook: the tokenizer that ships beside the weights, if there is one (an
        explicit tokenizer wins)."""
        if self.tokenizer is None:
            path = Path(path)
            self.tokenizer = _tokenizer_from_dir(path if path.is_dir() else path.parent)

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official BLIP checkpoint keys -> transformers' (= this module's).

        The official text encoder already uses BERT's names, as transformers does; the ViT is
        renamed (visual_encoder.blocks.N.attn.qkv -> vision_model.encoder.layers.N.self_attn.qkv,
        ...), as transformers' own conversion script does. Dropped: the momentum encoders and
        projections (*_m), the contrastive queues, temp, the captioning decoder of the
        pretrained checkpoints (text_decoder.*), and position_ids buffers.
        """
        out = {}
        for key, value in state.items():
            if key.endswith("position_ids") or key in _DROPPED or key.startswith(_DROPPED_UNDER):
                continue
            out[_rename(key) if key.startswith("visual_encoder.") else key] = value
        return out


_DROPPED_UNDER = ("visual_encoder_m.", "text_encoder_m.", "vision_proj_m.", "text_proj_m.",
                  "text_decoder.")
_DROPPED = {"image_queue", "text_queue", "idx_queue", "ptr_queue", "temp"}

_VIT_RENAMES = (  # official vit.py names -> transformers' BlipVisionModel names, in order
    ("visual_encoder.cls_token", "vision_model.embeddings.class_embedding"),
    ("visual_encoder.pos_embed", "vision_model.embeddings.position_embedding"),
    ("visual_encoder.patch_embed.proj.", "vision_model.embeddings.patch_embedding."),
    ("visual_encoder.blocks.", "vision_model.encoder.layers."),
    ("visual_encoder.norm.", "vision_model.post_layernorm."),
    (".norm1.", ".layer_norm1."),
    (".norm2.", ".layer_norm2."),
    (".attn.qkv.", ".self_attn.qkv."),
    (".attn.proj.", ".self_attn.projection."),
)


def _rename(key: str) -> str:
    for old, new in _VIT_RENAMES:
        key = key.replace(old, new)
    return key


def _tokenizer_from_dir(directory: Path):
    """AutoTokenizer from local files only; None when the directory holds none."""
    from transformers import AutoTokenizer

    if not directory.is_dir():
        return None
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError):  # no (or unreadable) tokenizer files here
        logging.getLogger(__name__).info("no BLIP tokenizer in %s", directory)
        return None
