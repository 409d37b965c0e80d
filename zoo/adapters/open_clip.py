"""open_clip adapter: CLIP-style dual encoders (OpenAI CLIP, OpenCLIP, MetaCLIP, DFN, EVA-CLIP...).

`pooled` is the image tower's output before the projection and `projected` the joint-space
embedding, computed with open_clip's own `_embeds` / `transformer` / `_pool` steps so that
`projected` equals `model.encode_image` exactly.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import torch

from vitbench.contract import Encoder, ImageFeatures, WeightsSource
from vitbench.errors import VitbenchError
from vitbench.zoo.transforms import make_transform
from vitbench.zoo.weights import find_checkpoint, resolve, seeded

CHECKPOINT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(kw_only=True, repr=False)
class OpenClipEncoder(Encoder):
    model: torch.nn.Module
    tokenizer: Any

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        self._no_layers(layers)
        visual = self.model.visual
        if not hasattr(visual, "_pool"):  # timm / ModifiedResNet towers expose only the output
            projected = self.model.encode_image(pixels)
            return ImageFeatures(pooled=projected, projected=projected)
        pooled, tokens = visual._pool(visual.transformer(visual._embeds(pixels)))
        projected = pooled @ visual.proj if visual.proj is not None else pooled
        return ImageFeatures(pooled=pooled, tokens=tokens, projected=projected)

    def _text(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def source_for_tag(arch: str, tag: str) -> WeightsSource:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        raise VitbenchError(f"open_clip has no weights {tag!r} for {arch}; tags: {', '.join(tags)}")
    return WeightsSource(tag, cfg.get("hf_hub", "").strip("/") or None, CHECKPOINT_FILES)


def build(entry, request, resolution: int) -> OpenClipEncoder:
    import open_clip

    spec = entry.spec
    path, loaded = resolve(spec, request, lambda tag: source_for_tag(spec.backend_id, tag))
    kwargs: dict = dict(entry.build_args)
    if resolution != spec.input_size:
        if not spec.dynamic_resolution:
            raise VitbenchError(f"{spec.name} cannot run at {resolution} px")
        kwargs["force_image_size"] = resolution  # load_checkpoint resizes position embeddings
    with seeded(), _quiet_root_logger():  # open_clip warns "randomly initialised" on root
        model = open_clip.create_model(spec.backend_id, pretrained=None, **kwargs)
    if path is not None:
        file = find_checkpoint(path, CHECKPOINT_FILES)
        try:
            open_clip.load_checkpoint(model, str(file), weights_only=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:200]
            raise VitbenchError(f"weights {file} do not fit {spec.name}: {first}") from exc
    return OpenClipEncoder(spec=spec, loaded=loaded, transform=make_transform(spec, resolution),
                           resolution=resolution, model=model.eval(),
                           tokenizer=open_clip.get_tokenizer(spec.backend_id))
