"""Reference adapter: encoders written in plain torch under zoo/reference/.

The entry's build_args name the model class (`factory`, a "module:Class" path inside
vitbench.zoo.reference) and its constructor arguments (`kwargs`). Weights: random (seeded),
or a local file/directory in either the official key layout or vitbench's own; `convert`
(a classmethod of the model) maps the official one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from vitbench.contract import Encoder, ImageFeatures, WeightsSource
from vitbench.errors import VitbenchError
from vitbench.zoo.transforms import make_transform
from vitbench.zoo.weights import find_checkpoint, load_state_dict, resolve, seeded

CHECKPOINT_FILES = ("model.safetensors", "checkpoint.pth", "pytorch_model.bin")


@dataclass(kw_only=True, repr=False)
class ReferenceEncoder(Encoder):
    model: torch.nn.Module

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        return self.model.forward_image(pixels, layers)

    def _text(self, texts: list[str]) -> torch.Tensor:
        return self.model.forward_text(texts)


def model_class(entry) -> type:
    module, _, name = entry.build_args["factory"].partition(":")
    return getattr(importlib.import_module(f"vitbench.zoo.reference.{module}"), name)


def build(entry, request, resolution: int) -> ReferenceEncoder:
    spec = entry.spec
    path, loaded = resolve(spec, request, lambda tag: _one_tag(spec, tag))
    kwargs = dict(entry.build_args.get("kwargs", {}))
    if resolution != spec.input_size:
        if not spec.dynamic_resolution:
            raise VitbenchError(f"{spec.name} cannot run at {resolution} px (fixed input size "
                                f"{spec.input_size})")
        kwargs["img_size"] = resolution
    cls = model_class(entry)
    with seeded():
        model = cls(**kwargs)
    if path is not None and path.is_dir() and hasattr(model, "load_directory"):
        model.load_directory(path)  # weights spread over files (MoDE: a checkpoint per expert)
    elif path is not None:
        file = find_checkpoint(path, CHECKPOINT_FILES)
        load_into(model, cls.convert(load_state_dict(file)), f"weights {file}", spec.name)
        if hasattr(model, "use_weights_dir"):  # tokenizer files shipped next to the weights
            model.use_weights_dir(file.parent)
    return ReferenceEncoder(spec=spec, loaded=loaded, transform=make_transform(spec, resolution),
                            resolution=resolution, model=model.eval())


def load_into(model: torch.nn.Module, state: dict, what: str, name: str) -> None:
    """load_state_dict(strict) with position embeddings resampled, as one-line errors."""
    if hasattr(model, "adapt_state"):  # e.g. position embeddings for another resolution
        state = model.adapt_state(state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise VitbenchError(f"{what} do not fit {name}: {detail}") from exc


def _one_tag(spec, tag: str) -> WeightsSource:
    raise VitbenchError(f"{spec.name} has one published weights tag, {spec.weights.tag!r}; "
                        "for other weights pass a local file")
