"""transformers adapter: vision and vision-text models (SigLIP, CLIP, DINOv2, ...).

The entry carries its transformers config, so `pretrained=False` builds the exact architecture
offline. A directory with config.json (save_pretrained layout, or a hub snapshot) loads with
`from_pretrained`; a lone weights file loads into the entry's config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vitbench.contract import Encoder, ImageFeatures
from vitbench.errors import VitbenchError
from vitbench.zoo.transforms import make_transform
from vitbench.zoo.weights import find_checkpoint, load_state_dict, resolve, seeded

CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(kw_only=True, repr=False)
class HFEncoder(Encoder):
    model: torch.nn.Module
    tokenizer: Any = None
    text_kwargs: dict = field(default_factory=dict)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        self._no_layers(layers)
        vision = getattr(self.model, "vision_model", self.model)
        out = vision(pixel_values=pixels,
                     interpolate_pos_encoding=self.resolution != self.spec.input_size)
        hidden = out.last_hidden_state
        patch = self.spec.patch_size
        n_patches = (pixels.shape[-2] // patch) * (pixels.shape[-1] // patch)
        pooled = out.pooler_output
        projected = None
        if self.spec.has_text:  # CLIP projects the pooled output; SigLIP's pooled is the embedding
            projection = getattr(self.model, "visual_projection", None)
            projected = projection(pooled) if projection is not None else pooled
        return ImageFeatures(pooled=pooled, tokens=hidden[:, -n_patches:], projected=projected)

    def _text(self, texts: list[str]) -> torch.Tensor:
        if self.tokenizer is None:
            raise VitbenchError(
                f"{self.spec.name}: no tokenizer here (its files come with the published "
                "weights); load from a directory that holds them to encode text")
        batch = self.tokenizer(texts, return_tensors="pt", truncation=True, **self.text_kwargs)
        out = self.model.get_text_features(**batch.to(self.device))
        return getattr(out, "pooler_output", out)  # transformers 5 returns a model output


def build(entry, request, resolution: int) -> HFEncoder:
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    spec = entry.spec
    args = dict(entry.build_args)
    path, loaded = resolve(spec, request, _no_other_tags(spec))
    if path is not None and path.is_file() and path.parent.joinpath("config.json").is_file():
        path = path.parent  # a hub snapshot: load it as the directory it is
    hf_logging.set_verbosity_error()  # config-validation chatter is not the user's problem
    with seeded():
        if path is not None and path.is_dir() and (path / "config.json").is_file():
            model = AutoModel.from_pretrained(path, local_files_only=True)
        else:
            model = AutoModel.from_config(AutoConfig.for_model(**args["config"]))
            if path is not None:
                _load_file(model, find_checkpoint(path, CHECKPOINT_FILES))
    return HFEncoder(spec=spec, loaded=loaded, transform=make_transform(spec, resolution),
                     resolution=resolution, model=model.eval(), tokenizer=_tokenizer(path),
                     text_kwargs=args.get("text_kwargs", {}))


def _load_file(model: torch.nn.Module, file: Path) -> None:
    state = load_state_dict(file)
    result = model.load_state_dict(state, strict=False)
    # non-persistent buffers (position_ids) may be absent from older checkpoints
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise VitbenchError(f"weights {file} do not fit: {len(missing)} missing keys "
                            f"(e.g. {missing[:2]}), {len(result.unexpected_keys)} unexpected "
                            f"(e.g. {result.unexpected_keys[:2]})")


def _tokenizer(path: Path | None):
    from transformers import AutoTokenizer

    if path is None or not path.is_dir():
        return None
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):  # no tokenizer files in this directory
        logging.getLogger(__name__).info("no tokenizer in %s", path)
        return None


def _no_other_tags(spec):
    def source_for_tag(tag: str):
        raise VitbenchError(f"{spec.name} has one published weights tag, {spec.weights.tag!r}; "
                            f"for other weights pass a local directory")
    return source_for_tag
