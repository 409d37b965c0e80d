"""The encoder registry: one name per entry, one `load` for every backend.

Family modules (zoo/families/*.py) call `register(spec)` at import; the backend named in the
spec decides which adapter builds it. Adapters import their heavy libraries lazily.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from vitbench.contract import Encoder, EncoderSpec, resolve_device, resolve_dtype
from vitbench.errors import UnknownNameError, VitbenchError
from vitbench.zoo.weights import WeightsRequest, parse_pretrained

ADAPTERS = {  # backend -> module with `build(entry, request, resolution) -> Encoder`
    "pixels": "vitbench.zoo.adapters.pixels",
    "timm": "vitbench.zoo.adapters.timm",
    "open_clip": "vitbench.zoo.adapters.open_clip",
    "transformers": "vitbench.zoo.adapters.hf",
    "reference": "vitbench.zoo.adapters.reference",
    "factory": "vitbench.zoo.adapters.factory",  # bring-your-own `module:callable` (custom.py)
}


@dataclass(frozen=True)
class Entry:
    """A registered encoder: its spec plus backend-specific build arguments."""

    spec: EncoderSpec
    # e.g. a transformers config dict, so `pretrained=False` builds offline
    build_args: dict = field(default_factory=dict, compare=False, hash=False)


_REGISTRY: dict[str, Entry] = {}
_CUSTOM: dict[str, Entry] = {}


def register(spec: EncoderSpec, **build_args) -> EncoderSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"encoder {spec.name!r} registered twice")
    if spec.backend not in ADAPTERS:
        raise ValueError(f"{spec.name}: unknown backend {spec.backend!r}")
    _REGISTRY[spec.name] = Entry(spec, build_args)
    return spec


def _ensure_loaded() -> None:
    """Import every family module once (each registers its entries at import)."""
    import pkgutil

    from vitbench.zoo import families

    for info in pkgutil.iter_modules(families.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"vitbench.zoo.families.{info.name}")


def get_entry(name: str | os.PathLike) -> Entry:
    """A zoo entry; else a vitbench run directory (zoo/rundir.py); else a bring-your-own
    `timm:` / `open_clip:` / `hf:` / `module:callable` model or an installed package's
    `vitbench.encoders` entry point (zoo/custom.py)."""
    _ensure_loaded()
    name = os.fspath(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if os.path.isdir(name):  # read afresh each time: a training run rewrites its directory
        from vitbench.zoo.rundir import run_entry

        return run_entry(name)
    if name not in _CUSTOM:  # deriving the spec builds the model on the meta device
        from vitbench.zoo.custom import custom_entry, entry_point_entry

        entry = custom_entry(name) if ":" in name else entry_point_entry(name)
        if entry is None:
            raise UnknownNameError("model", name, _REGISTRY)
        _CUSTOM[name] = entry
    return _CUSTOM[name]


def get_spec(name: str) -> EncoderSpec:
    return get_entry(name).spec


def list_models(family: str | None = None, supervision: str | None = None,
                backend: str | None = None) -> list[EncoderSpec]:
    """Specs of the registered encoders, optionally filtered, in registration order."""
    _ensure_loaded()
    specs = [e.spec for e in _REGISTRY.values()]
    return [s for s in specs
            if (family is None or s.family == family)
            and (supervision is None or s.supervision.value == supervision)
            and (backend is None or s.backend == backend)]


def adapter(backend: str) -> Callable[..., Encoder]:
    return importlib.import_module(ADAPTERS[backend]).build


def load(name: str, pretrained: bool | str | os.PathLike = True, *, tag: str | None = None,
         resolution: int | None = None, device: str = "cpu", dtype: str = "fp32") -> Encoder:
    """Load a zoo encoder.

    Args:
        name: registered name, e.g. "eva02_l" (`vitbench list`).
        pretrained: True for the published weights (hub cache, else download), False for the
            exact architecture with seeded random weights, or a local file/directory.
        tag: another published weights tag of the same architecture.
        resolution: input size to run at (ViTs interpolate position embeddings; others only
            resize); default the entry's native size.
        device: "cpu" or "cuda[:N]".
        dtype: "fp32", or "bf16"/"fp16" autocast.
    """
    entry = get_entry(name)
    request = parse_pretrained(pretrained, entry.spec, tag)
    return build(entry, request, resolution).to(resolve_device(device), resolve_dtype(dtype))


def build(entry: Entry, request: WeightsRequest, resolution: int | None) -> Encoder:
    resolution = resolution or entry.spec.input_size
    if resolution < 1:
        raise VitbenchError(f"resolution must be a positive number of pixels, got {resolution}")
    from vitbench.zoo.rundir import with_joint_space

    # a run of an image-text objective keeps its text tower (zero-shot, retrieval)
    return with_joint_space(adapter(entry.spec.backend)(entry, request, resolution))
