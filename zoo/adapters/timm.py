"""timm adapter: any timm model through its uniform forward_features / forward_head surface."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vitbench.contract import Encoder, ImageFeatures, LayerOutput, WeightsSource
from vitbench.errors import VitbenchError
from vitbench.zoo.adapters.naflex import naflex_forward
from vitbench.zoo.transforms import make_transform
from vitbench.zoo.weights import find_checkpoint, resolve, seeded

# timm's hub repos hold these; a user directory may hold any one checkpoint
CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(kw_only=True, repr=False)
class TimmEncoder(Encoder):
    model: torch.nn.Module

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        if isinstance(pixels, list):  # differently sized images (spec.variable_size): NaFlex
            return naflex_forward(self.model, pixels, layers, self.spec.name)
        if layers:
            feats, outputs = vit_intermediates(self.model, pixels, layers, self.spec.name)
        else:
            feats, outputs = self.model.forward_features(pixels), ()
        pooled = self.model.forward_head(feats, pre_logits=True)
        return ImageFeatures(pooled=pooled, tokens=patch_tokens(self.model, feats),
                             layers=outputs)


def block_indices(name: str, blocks: int, layers: tuple[int, ...]) -> list[int]:
    """The distinct non-negative block indices `layers` asks for, or a one-line error."""
    if any(not -blocks <= i < blocks for i in layers):
        raise VitbenchError(f"{name}: layers must be block indices in [-{blocks}, "
                            f"{blocks - 1}], got {list(layers)}")
    return sorted({i % blocks for i in layers})


def vit_intermediates(model, pixels, layers, name):
    """Final features and the requested blocks in one pass (timm's forward_intermediates)."""
    blocks = len(getattr(model, "blocks", ()))
    hierarchical = VitbenchError(f"{name}: per-layer features need a ViT-style model (blocks "
                                 "over one token sequence); this one is hierarchical")
    if not blocks:
        raise hierarchical
    wanted = block_indices(name, blocks, layers)
    try:
        feats, outs = model.forward_intermediates(
            pixels, indices=wanted, norm=True, output_fmt="NLC", return_prefix_tokens=True)
    except (TypeError, AssertionError) as exc:  # feature-map models: no NLC / prefix tokens
        raise hierarchical from exc
    by_block = dict(zip(wanted, outs, strict=True))
    return feats, tuple(
        LayerOutput(i, prefix[:, 0] if prefix.shape[1] else None, tokens)
        for i in layers for tokens, prefix in [by_block[i % blocks]])


def patch_tokens(model: torch.nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """(B, N, D) patch tokens: drop class/register tokens, flatten feature maps."""
    if feats.ndim == 3:
        return feats[:, getattr(model, "num_prefix_tokens", 0):]
    if getattr(model, "output_fmt", "NCHW") == "NHWC":
        return feats.flatten(1, 2)
    return feats.flatten(2).transpose(1, 2)


def _vit_like(name: str) -> bool:
    """timm's ViT, DeiT and EVA classes: the ones that take `dynamic_img_size`."""
    import timm

    arch = name.split(".")[0]
    return any(arch in timm.list_models(module=m) for m in ("vision_transformer", "deit", "eva"))


def _fixed_input_size(name: str) -> bool:
    """timm's own flag: window/position-embedding models are built for one input size."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return bool(cfg is None or cfg.fixed_input_size)


def source_for_tag(arch: str, tag: str) -> WeightsSource:
    return WeightsSource(tag, f"timm/{arch}.{tag}", CHECKPOINT_FILES)


def build(entry, request, resolution: int) -> TimmEncoder:
    import timm

    spec = entry.spec
    path, loaded = resolve(spec, request, lambda tag: source_for_tag(spec.backend_id, tag))
    tag = request.tag if request.kind == "hub" else spec.weights.tag
    # "local": a run directory of an entry without published weights (no timm tag to keep)
    name = f"{spec.backend_id}.{tag}" if tag and tag != "local" else spec.backend_id
    kwargs = dict(entry.build_args)
    if spec.dynamic_resolution and _vit_like(name):
        # forward accepts any size, not only the one built for: DINO's multi-crop feeds
        # smaller local crops. Same outputs at the built size (no position resampling there).
        kwargs.setdefault("dynamic_img_size", True)
    if spec.dynamic_resolution and resolution != spec.input_size:
        kwargs["img_size"] = resolution  # timm resamples position embeddings on load
    elif resolution != spec.input_size and _fixed_input_size(name):
        raise VitbenchError(f"{spec.name} cannot run at {resolution} px (fixed input size "
                            f"{spec.input_size}); convolutional models only resize")
    if path is None:
        with seeded():
            model = timm.create_model(name, pretrained=False, **kwargs)
    else:
        overlay = {"file": str(find_checkpoint(path, CHECKPOINT_FILES))}
        try:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay,
                                      **kwargs)
        except RuntimeError as exc:  # state-dict mismatch: say which file and which model
            first = str(exc).strip().splitlines()[0][:200]
            raise VitbenchError(f"weights {path} do not fit {spec.name} ({name}): {first}") from exc
    return TimmEncoder(spec=spec, loaded=loaded, transform=make_transform(spec, resolution),
                       resolution=resolution, model=model.eval())
