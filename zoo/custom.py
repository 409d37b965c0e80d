"""Bring your own encoder: any timm, open_clip or transformers model by name, same contract.

    timm:vit_base_patch16_224.augreg_in21k     (tag optional: timm's default tag)
    open_clip:ViT-B-32/laion2b_s34b_b79k       (tag optional: no published weights then)
    hf:<local dir or cached hub id>            (config.json + preprocessor_config.json)

The spec's facts (params, input size, mean/std, dims) are derived from the backend's own
configs, building the model on the meta device (no memory, no weights). What cannot be derived
raises a one-line error that says what is missing and how to supply it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.errors import UnknownNameError, VitbenchError

PREFIXES = ("timm", "open_clip", "hf")
BYO = "bring-your-own"


def custom_entry(name: str):
    """The registry entry for a `prefix:reference` name."""
    from vitbench.zoo.registry import Entry

    prefix, _, ref = name.partition(":")
    if prefix not in PREFIXES or not ref:
        raise VitbenchError(f"cannot read model {name!r}: use a zoo name or one of "
                            f"{', '.join(p + ':<name>' for p in PREFIXES)}")
    spec, build_args = {"timm": _timm, "open_clip": _open_clip, "hf": _hf}[prefix](name, ref)
    return Entry(spec, build_args)


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
