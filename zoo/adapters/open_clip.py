"""open_clip adapter: CLIP-style dual encoders (OpenAI CLIP, OpenCLIP, MetaCLIP, DFN, EVA-CLIP...).

`pooled` is the image tower's output before the projection and `projected` the joint-space
embedding, computed with open_clip's own `_embeds` / `transformer` / `_pool` steps so that
`projected` equals `model.encode_image` exactly.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from vitbench.contract import Encoder, ImageFeatures, LayerOutput, WeightsSource
from vitbench.errors import VitbenchError
from vitbench.zoo.adapters.timm import block_indices, patch_tokens, vit_intermediates
from vitbench.zoo.transforms import make_transform
from vitbench.zoo.weights import find_checkpoint, resolve, seeded

CHECKPOINT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(kw_only=True, repr=False)
class OpenClipEncoder(Encoder):
    model: torch.nn.Module

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        visual = self.model.visual
        if hasattr(visual, "trunk"):  # a timm model inside open_clip (EVA-CLIP, SigLIP)
            return self._timm_tower(visual, pixels, layers)
        if hasattr(visual, "attnpool"):  # OpenAI's ModifiedResNet
            self._no_layers(layers)
            x = visual.stem(pixels)
            x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
            # the attention pool already projects: there is no pre-projection embedding
            projected = visual.attnpool(x)
            return ImageFeatures(pooled=projected, tokens=x.flatten(2).transpose(1, 2),
                                 projected=projected)
        return self._vit_tower(visual, pixels, layers)

    def _vit_tower(self, visual, pixels, layers) -> ImageFeatures:
        x = visual._embeds(pixels)
        blocks = len(visual.transformer.resblocks)
        by_block = {}
        if layers:
            wanted = block_indices(self.spec.name, blocks, layers)
            x, outs = visual.transformer.forward_intermediates(x, indices=wanted)
            by_block = dict(zip(wanted, outs, strict=True))
        else:
            x = visual.transformer(x)
        pooled, tokens = visual._pool(x)
        if visual.attn_pool is not None:  # CoCa: the pooler's queries are not patch tokens
            tokens = x[:, 1:]
        projected = pooled @ visual.proj if visual.proj is not None else pooled
        # per-layer outputs get the final norm, as timm's norm=True does (not CoCa's, whose
        # ln_post has the pooler's width)
        norm = visual.ln_post if visual.attn_pool is None else torch.nn.Identity()
        outputs = tuple(LayerOutput(i, h[:, 0], h[:, 1:])
                        for i in layers for h in [norm(by_block[i % blocks])])
        return ImageFeatures(pooled=pooled, tokens=tokens, projected=projected, layers=outputs)

    def _timm_tower(self, visual, pixels, layers) -> ImageFeatures:
        if layers:
            feats, outputs = vit_intermediates(visual.trunk, pixels, layers, self.spec.name)
        else:
            feats, outputs = visual.trunk.forward_features(pixels), ()
        # open_clip projects either with the trunk's own classifier (EVA-CLIP) or its `head`
        # (identity for SigLIP): pooled is before both, projected after both
        pooled = visual.trunk.forward_head(feats, pre_logits=True)
        projected = visual.head(visual.trunk.forward_head(feats))
        return ImageFeatures(pooled=pooled, tokens=patch_tokens(visual.trunk, feats),
                             projected=projected, layers=outputs)

    def _text(self, texts: list[str]) -> torch.Tensor:
        tokens = self._tokenizer()(texts).to(self.device)
        return self.model.encode_text(tokens, normalize=False)  # CoCa normalises by default

    def _tokenizer(self):
        """Built on first use: SigLIP's come from the hub, so image-only use stays offline."""
        import open_clip

        if self.__dict__.get("tokenizer") is None:
            try:
                self.__dict__["tokenizer"] = open_clip.get_tokenizer(self.spec.backend_id)
            except (OSError, ValueError) as exc:
                raise VitbenchError(
                    f"{self.spec.name}: its text tokenizer ({self.spec.backend_id}) is not "
                    f"available offline ({type(exc).__name__}); put it in the hub cache to "
                    "encode text") from exc
        return self.__dict__["tokenizer"]


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
        # the default device is "meta" when a test builds inside torch.device("meta")
        model = open_clip.create_model(spec.backend_id, pretrained=None,
                                       device=torch.get_default_device(), **kwargs)
    if path is not None:
        file = find_checkpoint(path, CHECKPOINT_FILES)
        try:
            open_clip.load_checkpoint(model, str(file), weights_only=True)
        except (RuntimeError, AssertionError) as exc:  # open_clip asserts on widths
            first = str(exc).strip().splitlines()[0][:200]
            raise VitbenchError(f"weights {file} do not fit {spec.name}: {first}") from exc
    return OpenClipEncoder(spec=spec, loaded=loaded, transform=make_transform(spec, resolution),
                           resolution=resolution, model=model.eval())
