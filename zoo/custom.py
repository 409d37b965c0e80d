"""Bring your own encoder: any timm, open_clip or transformers model, or your own code.

    timm:vit_base_patch16_224.augreg_in21k     (tag optional: timm's default tag)
    open_clip:ViT-B-32/laion2b_s34b_b79k       (tag optional: no published weights then)
    hf:<local dir or cached hub id>            (config.json + preprocessor_config.json)
    my_pkg.my_module:make_encoder              (your factory, see below)
    <name>                                     (an installed package's `vitbench.encoders`
                                                entry point: name = "module:callable")

The spec's facts (params, input size, mean/std, dims) are derived from the backend's own
configs, building the model on the meta device (no memory, no weights). What cannot be derived
raises a one-line error that says what is missing and how to supply it.

A factory is any callable. vitbench passes it only the keyword arguments it declares among
`pretrained` (bool: False asks for random weights) and `resolution` (int: declaring it makes
the encoder run at other sizes). It returns one of
- a vitbench `Encoder` (e.g. from `vitbench.load`): used as it is, renamed;
- a `torch.nn.Module`: a timm-style model (forward_features / forward_head) runs as timm
  entries do; any other module's `forward_image(pixels, layers)` or `forward(pixels)` returns
  ImageFeatures or a (B, D) tensor (the pooled embedding); an optional `forward_text(texts)`
  gives the joint-space text embedding. Facts come from timm's `pretrained_cfg` when there is
  one and from a forward on the meta device;
- `(module, facts)`: facts the module cannot tell, e.g. {"input_size": 224, "mean": (...),
  "std": (...)} (accepted keys: FACTS). Missing ones are named in the error.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
from dataclasses import replace
from pathlib import Path

import torch

from vitbench.contract import Encoder, EncoderSpec, Supervision, WeightsSource
from vitbench.errors import UnknownNameError, VitbenchError, check_options
from vitbench.zoo.weights import random_weights, seeded

PREFIXES = ("timm", "open_clip", "hf")
BYO = "bring-your-own"
ENTRY_POINTS = "vitbench.encoders"  # group of installed packages' factories: name = "mod:fn"
FACTORY_TAG = "factory"  # the weights a factory builds when asked for pretrained ones
NEEDED = ("input_size", "mean", "std")  # facts a module must state when nothing tells them
FACTS = (*NEEDED, "patch_size", "crop_pct", "resize_mode", "interpolation", "supervision",
         "family", "pretraining_data", "paper", "license", "notes", "gflops",
         "published_params_m", "params_source")
NAMES = ", ".join([*(p + ":<name>" for p in PREFIXES), "a run directory", "module:callable"])


def custom_entry(name: str):
    """The registry entry for a `prefix:reference` or `module:callable` name."""
    from vitbench.zoo.registry import Entry

    prefix, _, ref = name.partition(":")
    if prefix in PREFIXES and ref:
        spec, build_args = {"timm": _timm, "open_clip": _open_clip, "hf": _hf}[prefix](name, ref)
        return Entry(spec, build_args)
    if ref and _dotted(prefix) and _dotted(ref):
        return factory_entry(name, name)
    raise VitbenchError(f"cannot read model {name!r}: use a zoo name or one of {NAMES}")


def entry_point_entry(name: str):
    """The entry of an installed package's `vitbench.encoders` entry point `name`, or None."""
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS) if ep.name == name]
    return factory_entry(name, found[0].value) if found else None


def _who(name: str, ref: str) -> str:
    return name if name == ref else f"{name} ({ref})"


def _dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _params_m(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


def _timm(name: str, ref: str):
    import timm
    from timm.models import get_pretrained_cfg

    arch, _, tag = ref.partition(".")
    if not timm.is_model(arch):
        raise UnknownNameError("timm model", arch, timm.list_models())
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    if cfg is None:
        raise VitbenchError(f"timm has no weights tag {tag!r} for {arch}; see "
                            f"timm.list_pretrained('{arch}*')")
    with torch.device("meta"):
        model = timm.create_model(f"{arch}.{cfg.tag}" if cfg.tag else arch, pretrained=False)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    params = _params_m(model)
    spec = EncoderSpec(
        name=name, family=BYO, supervision=Supervision.UNKNOWN, backend="timm", backend_id=arch,
        weights=WeightsSource(cfg.tag or "", cfg.hf_hub_id, ("model.safetensors",),
                              round(params * 4)),
        input_size=cfg.input_size[-1], mean=tuple(cfg.mean), std=tuple(cfg.std),
        crop_pct=cfg.crop_pct, interpolation=cfg.interpolation or "bicubic",
        patch_size=patch[0] if patch else None, embed_dim=model.num_features, params_m=params,
        pretraining_data="see the timm model card", paper=cfg.paper_ids or "",
        dynamic_resolution=hasattr(model, "pos_embed"), license=cfg.license or "",
    )
    return spec, {}


def _open_clip(name: str, ref: str):
    import open_clip

    from vitbench.zoo.adapters.open_clip import CHECKPOINT_FILES

    arch, _, tag = ref.partition("/")
    config = open_clip.get_model_config(arch)
    if config is None:
        raise UnknownNameError("open_clip model", arch, open_clip.list_models())
    pretrained = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    if tag and not pretrained:
        tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        raise VitbenchError(f"open_clip has no weights {tag!r} for {arch}; tags: {', '.join(tags)}")
    with torch.device("meta"):  # device="meta" alone initialises on the CPU first
        model = open_clip.create_model(arch, pretrained=None, device="meta")
    vision = config["vision_cfg"]
    native = hasattr(model.visual, "_pool")  # open_clip's own ViT: pooled is pre-projection
    image_size = vision.get("image_size", 224)
    params = _params_m(model.visual)
    spec = EncoderSpec(
        name=name, family=BYO, supervision=Supervision.WEAKLY, backend="open_clip",
        backend_id=arch,
        weights=WeightsSource(tag, (pretrained.get("hf_hub") or "").strip("/") or None,
                              CHECKPOINT_FILES, round(_params_m(model) * 4)),
        input_size=image_size if isinstance(image_size, int) else image_size[0],
        mean=tuple(pretrained.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(pretrained.get("std", open_clip.OPENAI_DATASET_STD)),
        resize_mode=pretrained.get("resize_mode", "shortest"),
        patch_size=vision.get("patch_size"),
        embed_dim=vision["width"] if native else config["embed_dim"],
        projection_dim=config["embed_dim"], params_m=params,
        pretraining_data=f"see open_clip's card for {arch}/{tag}" if tag else "none (no tag)",
        paper="", dynamic_resolution=native,
    )
    return spec, {}


def _hf(name: str, ref: str):
    from transformers import AutoConfig, AutoModel

    directory = _hf_directory(ref)
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    vision = getattr(config, "vision_config", config)
    processor = directory / "preprocessor_config.json"
    if not processor.is_file():
        raise VitbenchError(f"cannot derive preprocessing for {name}: {directory} has no "
                            "preprocessor_config.json (save the image processor there with "
                            "save_pretrained)")
    pre = json.loads(processor.read_text())
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    tower = getattr(model, "vision_model", model)
    has_text = hasattr(config, "text_config")
    size, crop = pre.get("size", {}), pre.get("crop_size", {})
    cropped = pre.get("do_center_crop", False) and "shortest_edge" in size
    input_size = _side(crop) if cropped else _side(size) or vision.image_size
    spec = EncoderSpec(
        name=name, family=BYO, supervision=Supervision.UNKNOWN, backend="transformers",
        backend_id=type(model).__name__,
        weights=WeightsSource("local", None, (), round(_params_m(model) * 4), str(directory)),
        input_size=input_size, mean=tuple(pre["image_mean"]), std=tuple(pre["image_std"]),
        crop_pct=input_size / size["shortest_edge"] if cropped else 1.0,
        resize_mode="shortest" if cropped else "squash", patch_size=vision.patch_size,
        embed_dim=vision.hidden_size,
        projection_dim=(getattr(config, "projection_dim", None) or vision.hidden_size)
        if has_text else None,
        params_m=_params_m(tower), pretraining_data="see the model card", paper="",
        dynamic_resolution=True,
    )
    return spec, {"config": config.to_dict()}


def _side(size: dict) -> int | None:
    return size.get("height") or size.get("shortest_edge")


def _hf_directory(ref: str) -> Path:
    """A local directory, or the snapshot of a hub id already in the cache (never a download:
    a bring-your-own model is read from what the user has)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref, local_files_only=True))
    except Exception as exc:  # not cached, or not a repo id at all
        raise VitbenchError(f"hf:{ref} is neither a local directory nor a cached hub model "
                            f"({type(exc).__name__}); download it first "
                            f"(huggingface-cli download {ref}) or pass a directory") from exc


# -- factories: `module:callable` names and entry points --------------------------------------

def factory_entry(name: str, ref: str):
    """Call the factory once to derive the spec: on the meta device when it builds there (no
    memory, no weights), else for real on the CPU."""
    from vitbench.zoo.registry import Entry

    factory = load_factory(ref, name)
    random = False if "pretrained" in inspect.signature(factory).parameters else None
    failure: Exception | None = None
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                made, facts = call_factory(factory, name, ref, pretrained=random)
                return Entry(_factory_spec(name, ref, factory, made, facts), {"factory": ref})
        except VitbenchError:
            raise
        except Exception as exc:  # user code: try the CPU, then report in one line
            failure = exc
    first = str(failure).strip().splitlines()[0][:200] if str(failure).strip() else ""
    raise VitbenchError(f"calling {_who(name, ref)} failed ({type(failure).__name__}: {first})")


def load_factory(ref: str, name: str):
    """The callable a `module:attribute` reference names, or a one-line error."""
    module_name, _, attr = ref.partition(":")
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the user's module failing at import
        raise VitbenchError(f"cannot import {module_name!r} for model {name!r} "
                            f"({type(exc).__name__}: {exc}); use a zoo name or one of "
                            f"{NAMES}") from exc
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise VitbenchError(f"{name}: {module_name} has no callable {attr!r}")
    return target


def call_factory(factory, name: str, ref: str, *, pretrained: bool | None,
                 resolution: int | None = None) -> tuple[Encoder | torch.nn.Module, dict]:
    """Call the factory (seeded) with the arguments it declares; returns (made, facts).

    pretrained=None: either weights will do (they are about to be replaced or not needed).
    """
    declared = inspect.signature(factory).parameters
    kwargs = {}
    if "pretrained" in declared and pretrained is not None:
        kwargs["pretrained"] = pretrained
    elif pretrained is False and "pretrained" not in declared:
        raise VitbenchError(f"{_who(name, ref)} takes no `pretrained` argument, so vitbench "
                            "cannot ask it for random weights; add `pretrained: bool = True`")
    if resolution is not None and "resolution" in declared:
        kwargs["resolution"] = resolution
    with seeded():
        made = factory(**kwargs)
    facts: dict = {}
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[1], dict):
        made, facts = made
    if not isinstance(made, (Encoder, torch.nn.Module)):
        raise VitbenchError(f"{_who(name, ref)} returned a {type(made).__name__}; return a "
                            "vitbench Encoder, a torch.nn.Module, or (module, facts)")
    check_options(facts, FACTS, f"{ref} fact")
    return made, facts


def _factory_spec(name: str, ref: str, factory, made, facts: dict) -> EncoderSpec:
    dynamic = "resolution" in inspect.signature(factory).parameters
    if isinstance(made, Encoder):  # its own facts, under this name, at the size it runs at
        native = made.resolution == made.spec.input_size
        return replace(made.spec, name=name, backend="factory", backend_id=ref,
                       weights=WeightsSource(FACTORY_TAG, size_mb=round(made.spec.params_m * 4)),
                       input_size=made.resolution, dynamic_resolution=dynamic,
                       gflops=made.spec.gflops if native else None, **_typed(name, facts))
    from vitbench.zoo.adapters.factory import wrap

    facts = {**_module_facts(made), **_typed(name, facts)}
    missing = [fact for fact in NEEDED if fact not in facts]
    if missing:
        wanted = ", ".join(f"{fact!r}: ..." for fact in missing)
        raise VitbenchError(f"cannot derive {', '.join(missing)} from the {type(made).__name__} "
                            f"that {_who(name, ref)} returns; return (module, {{{wanted}}})")
    params = _params_m(made)
    defaults = dict(family=BYO, supervision=Supervision.UNKNOWN, pretraining_data="", paper="")
    spec = EncoderSpec(
        name=name, backend="factory", backend_id=ref,
        weights=WeightsSource(FACTORY_TAG, size_mb=round(params * 4)), embed_dim=0,
        params_m=params, dynamic_resolution=dynamic, **{**defaults, **facts})
    size = spec.input_size
    with torch.no_grad():  # the widths of what it returns, on the device it was built on
        out = wrap(made, spec, random_weights(), size)._forward(torch.zeros(1, 3, size, size))
    projected = None if out.projected is None else out.projected.shape[-1]
    return replace(spec, embed_dim=out.pooled.shape[-1], projection_dim=projected)


def _module_facts(module: torch.nn.Module) -> dict:
    """What a module says about itself: timm's pretrained_cfg, its patch embedding."""
    cfg = getattr(module, "pretrained_cfg", None) or {}
    facts = {"input_size": cfg["input_size"][-1] if cfg.get("input_size") else None,
             "mean": tuple(cfg["mean"]) if cfg.get("mean") else None,
             "std": tuple(cfg["std"]) if cfg.get("std") else None,
             "crop_pct": cfg.get("crop_pct"), "interpolation": cfg.get("interpolation")}
    patch = getattr(getattr(module, "patch_embed", None), "patch_size", None)
    facts["patch_size"] = patch[0] if isinstance(patch, (tuple, list)) else patch
    return {k: v for k, v in facts.items() if v}


def _typed(name: str, facts: dict) -> dict:
    """User facts with the spec's types (tuples, the Supervision enum)."""
    facts = dict(facts)
    for key in ("mean", "std"):
        if key in facts:
            facts[key] = tuple(float(v) for v in facts[key])
    if "supervision" in facts:
        try:
            facts["supervision"] = Supervision(facts["supervision"])
        except ValueError:
            raise VitbenchError(f"{name}: supervision {facts['supervision']!r} is not one of "
                                f"{', '.join(s.value for s in Supervision)}") from None
    return facts
