"""Factory adapter: encoders built by the user's own callable (the contract: zoo/custom.py).

Every build calls the factory again, with the arguments it declares: `pretrained=False` for
random weights, `pretrained=True` for its own, and `resolution` when it takes one. A local
weights file loads into the module it returns (its own `state_dict` layout).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from vitbench.contract import Encoder, EncoderSpec, ImageFeatures, LoadedWeights
from vitbench.errors import VitbenchError
from vitbench.zoo.adapters.reference import load_into
from vitbench.zoo.transforms import make_transform
from vitbench.zoo.weights import file_weights, find_checkpoint, load_state_dict

CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(kw_only=True, repr=False)
class ModuleEncoder(Encoder):
    """A module whose `forward_image(pixels, layers)` or `forward(pixels)` returns
    ImageFeatures or a (B, D) pooled embedding."""

    model: torch.nn.Module

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        if hasattr(self.model, "forward_image"):
            out = self.model.forward_image(pixels, layers)
        else:
            self._no_layers(layers)
            out = self.model(pixels)
        if isinstance(out, ImageFeatures):
            return out
        if isinstance(out, torch.Tensor) and out.ndim == 2:
            return ImageFeatures(pooled=out)
        what = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise VitbenchError(f"{self.spec.name}: the module returned {what}; return a (B, D) "
                            "pooled embedding or ImageFeatures")

    def _text(self, texts: list[str]) -> torch.Tensor:
        if not hasattr(self.model, "forward_text"):
            return super()._text(texts)
        return self.model.forward_text(texts)


def wrap(module: torch.nn.Module, spec: EncoderSpec, loaded: LoadedWeights,
         resolution: int) -> Encoder:
    """The encoder for a module, chosen by the surface it declares: timm's forward_features /
    forward_head (pre-logits features, not the classifier's logits), else ModuleEncoder."""
    from vitbench.zoo.adapters.timm import TimmEncoder

    timm_like = (hasattr(module, "forward_features") and hasattr(module, "forward_head")
                 and not hasattr(module, "forward_image"))
    cls = TimmEncoder if timm_like else ModuleEncoder
    return cls(spec=spec, loaded=loaded, transform=make_transform(spec, resolution),
               resolution=resolution, model=module.eval())


def build(entry, request, resolution: int) -> Encoder:
    from vitbench.zoo.custom import FACTORY_TAG, call_factory, load_factory

    spec, ref = entry.spec, entry.build_args["factory"]
    if request.kind == "hub" and request.tag != spec.weights.tag:
        raise VitbenchError(f"{spec.name} has no weights tag {request.tag!r} (its factory "
                            "builds its own weights); pass a local file for others")
    if resolution != spec.input_size and not spec.dynamic_resolution:
        raise VitbenchError(f"{spec.name} runs at {spec.input_size} px; give {ref} a "
                            "`resolution` parameter to run it at others")
    pretrained = {"random": False, "hub": True}.get(request.kind)  # file: replaced anyway
    made, _ = call_factory(load_factory(ref, spec.name), spec.name, ref, pretrained=pretrained,
                           resolution=resolution)
    if isinstance(made, Encoder):
        if request.kind == "file":
            raise VitbenchError(f"{spec.name}: {ref} returns a ready Encoder; load weights "
                                "inside the factory (or return the module instead)")
        made.spec = spec
        return made
    if request.kind == "file":
        file = find_checkpoint(request.path, CHECKPOINT_FILES)
        load_into(made, load_state_dict(file), f"weights {file}", spec.name)
        loaded = file_weights(request.path)
    else:
        kind = "random" if request.kind == "random" else FACTORY_TAG
        loaded = LoadedWeights(kind, request.tag, state_identity(made))
    return wrap(made, spec, loaded, resolution)


def state_identity(module: torch.nn.Module) -> str:
    """sha256 of a module's tensors: the factory may return other weights tomorrow, and the
    feature cache must not serve features of the old ones."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        if tensor.is_meta:
            return "meta"
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]
