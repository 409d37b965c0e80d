"""vitbench run directories: a trained encoder's weights beside the facts of the run.

    DIR/run.json             {"model": "vit_s16", "resolution": 64, "objective": "dino",
                              "step": 1200, ...any other facts of the run}
    DIR/encoder.safetensors  the encoder's state dict in the base entry's backend format

`vitbench.load(DIR)`, `vitbench eval --model DIR` and `vitbench info DIR` read one as an
encoder: the base entry's architecture at the run's resolution with the run's weights. Its spec
is the base's with name = DIR, supervision from the objective, the run's resolution as input
size, and local weights. The pretraining loops write these with `save_run_encoder`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from vitbench.contract import Encoder, ImageFeatures, Supervision, WeightsSource
from vitbench.errors import VitbenchError
from vitbench.io import atomic_write, atomic_write_json

RUN_FILE = "run.json"
WEIGHTS_FILE = "encoder.safetensors"
REQUIRED = {"model": str, "resolution": int, "objective": str, "step": int}
# how each pretraining objective supervises; unlisted objectives are `unknown`
SUPERVISION = {
    **dict.fromkeys(("mae", "simmim", "beit", "beitv2", "data2vec", "dino", "dinov2", "ibot",
                     "ijepa", "moco", "mocov3", "simclr", "byol", "msn"), Supervision.SELF),
    **dict.fromkeys(("clip", "siglip", "flip", "coca", "lit", "albef", "blip", "vlmo"),
                    Supervision.WEAKLY),
    **dict.fromkeys(("supervised", "classification", "deit", "deit3"), Supervision.FULLY),
}


def save_run_encoder(encoder_or_model: Encoder | torch.nn.Module, spec_name: str,
                     directory: str | os.PathLike, **facts) -> Path:
    """Write DIR/encoder.safetensors, then DIR/run.json (so run.json means complete weights).

    Args:
        encoder_or_model: a vitbench Encoder, or the module whose state dict is the encoder in
            `spec_name`'s backend format (e.g. the timm model of a timm entry).
        spec_name: the zoo (or bring-your-own) name whose architecture this is; a run
            directory stands for its own base model.
        directory: created if needed; both files are replaced atomically.
        facts: resolution, objective and step (required), and any other facts of the run.
    """
    from vitbench import __version__
    from vitbench.zoo.registry import get_entry

    spec_name = os.fspath(spec_name)
    if _is_run(spec_name):  # continuing from a run: same architecture as its base
        spec_name = read_run(Path(spec_name))["model"]
    record = _validated({**facts, "model": spec_name}, "save_run_encoder")
    get_entry(spec_name)  # an unknown name fails here, not at load time
    from safetensors.torch import save_file

    state = _plain_state(_module(encoder_or_model, spec_name))
    directory = Path(directory)
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    atomic_write_json(directory / RUN_FILE, {**record, "vitbench_version": __version__})
    return directory


def load(directory: str | os.PathLike, pretrained=True, **kwargs) -> Encoder:
    """The encoder a run directory holds; same as `vitbench.load(DIR)`."""
    import vitbench

    if not os.path.isdir(directory):
        raise VitbenchError(f"run directory {os.fspath(directory)!r} does not exist")
    return vitbench.load(os.fspath(directory), pretrained, **kwargs)


def read_run(directory: Path) -> dict:
    """run.json of a run directory, checked; every problem is a one-line error."""
    file = directory / RUN_FILE
    if not directory.is_dir():
        raise VitbenchError(f"run directory {directory} does not exist")
    if not file.is_file():
        raise VitbenchError(f"{directory} is a directory but not a vitbench run directory: no "
                            f"{RUN_FILE} (write one with vitbench.zoo.rundir.save_run_encoder)")
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VitbenchError(f"{file} is not valid JSON ({exc})") from None
    return _validated(run, str(file))


def run_entry(directory: str):
    """The registry entry of a run directory (built by the base entry's own adapter)."""
    from vitbench.zoo.registry import Entry, get_entry

    path = Path(directory)
    run = read_run(path)
    if _is_run(run["model"]):
        raise VitbenchError(f"{path / RUN_FILE}: model must be a zoo or bring-your-own name, "
                            f"not a directory ({run['model']!r})")
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise VitbenchError(f"{path} has {RUN_FILE} but no {WEIGHTS_FILE} (the run's weights)")
    try:
        base = get_entry(run["model"])
    except VitbenchError as exc:
        raise VitbenchError(f"{path / RUN_FILE}: {exc}") from None
    spec = base.spec
    resolution = run["resolution"]
    same = resolution == spec.input_size  # else another grid: other position embeddings
    # timm derives the architecture (its head) from the weights tag: keep the base's
    tag = spec.weights.tag if spec.backend == "timm" and spec.weights.tag else "local"
    spec = replace(
        spec, name=directory.rstrip("/\\") or directory,  # as given: "./vit_s16" is no zoo name
        supervision=supervision_of(run["objective"]),
        input_size=resolution,
        weights=WeightsSource(tag, None, (WEIGHTS_FILE,), round(weights.stat().st_size / 1e6),
                              local=str(weights)),
        notes=f"{run['objective']} run of {run['model']}, step {run['step']}",
        gflops=spec.gflops if same else None,
        published_params_m=spec.published_params_m if same else None,
        params_source=spec.params_source if same else "")
    entry = Entry(spec, _native_at(base, resolution, path))
    if same:
        return entry
    return replace(entry, spec=replace(spec, params_m=_params_m(entry)))  # at this grid


@dataclass(kw_only=True, repr=False)
class RunJointEncoder(Encoder):
    """A run of an image-text objective (clip, siglip, ...): the run's image encoder plus its
    own text tower and projections, so zero-shot and retrieval tasks can score it."""

    image: Encoder
    objective: torch.nn.Module  # the whole trained objective, from the run's last checkpoint

    def modules(self) -> list[torch.nn.Module]:
        return [*self.image.modules(), self.objective]

    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        # The image tower runs twice (plain features, then the objective's own projection
        # path): each objective defines its joint space differently (CLS vs mean pooling,
        # VLMo's experts), and reusing its `embed_image` keeps them equal by construction.
        return replace(self.image._forward(pixels, layers),
                       projected=self.objective.embed_image(pixels))

    def _text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.objective.embed_text(list(texts))


def with_joint_space(encoder: Encoder) -> Encoder:
    """`encoder` with its run's text tower when it was built from the trained weights of a run
    directory whose objective has a joint image-text space (at the run's resolution); else
    `encoder` itself."""
    local = encoder.spec.weights.local
    if encoder.loaded.kind != "file" or not local or Path(local).name != WEIGHTS_FILE:
        return encoder
    directory = Path(local).parent
    if not (directory / RUN_FILE).is_file():
        return encoder
    # imported only for run directories: a plain zoo load never pays for the trainer
    from vitbench.pretrain.objectives import Objective, get_objective
    from vitbench.pretrain.trainer import load_objective

    run = read_run(directory)
    cls = get_objective(run["objective"])
    joint = cls.embed_text is not Objective.embed_text
    trained = (directory / "checkpoints" / "latest.json").is_file()
    if not (joint and trained and encoder.resolution == run["resolution"]):
        return encoder
    objective = load_objective(directory)
    with torch.no_grad():
        width = objective.embed_text(["a"]).shape[-1]
    return RunJointEncoder(spec=replace(encoder.spec, projection_dim=width),
                           loaded=encoder.loaded, transform=encoder.transform,
                           resolution=encoder.resolution, image=encoder, objective=objective)


def _is_run(name: str) -> bool:
    """A directory that `get_entry` reads as a run (zoo names come first)."""
    from vitbench.zoo.registry import list_models

    return os.path.isdir(name) and name not in {s.name for s in list_models()}


def supervision_of(objective: str) -> Supervision:
    return SUPERVISION.get(objective.strip().lower().replace("-", ""), Supervision.UNKNOWN)


def _native_at(base, resolution: int, path: Path) -> dict:
    """The base's build arguments with `resolution` as the native size: the architecture the
    base's adapter builds at that resolution (e.g. ViT position embeddings for its grid), which
    is what a run at that resolution trained and saved."""
    spec, args = base.spec, dict(base.build_args)
    if resolution == spec.input_size or (not spec.dynamic_resolution and not spec.patch_size):
        return args  # same size, or a model whose input size only sets the resize
    if not spec.dynamic_resolution:
        raise VitbenchError(f"{path}: {spec.name} runs at {spec.input_size} px only, but the "
                            f"run says resolution {resolution}")
    if spec.backend == "timm":
        args["img_size"] = resolution
    elif spec.backend == "reference":
        args["kwargs"] = {**args.get("kwargs", {}), "img_size": resolution}
    elif spec.backend == "open_clip":
        args["force_image_size"] = resolution
    else:  # transformers models interpolate at run time against their config's size
        raise VitbenchError(f"{path}: runs of {spec.backend} entries must be at the entry's "
                            f"native {spec.input_size} px (run.json says {resolution})")
    return args


def _params_m(entry) -> float:
    """Image-tower parameters (M) of an entry, built on the meta device (no memory)."""
    from vitbench.zoo.registry import build
    from vitbench.zoo.weights import WeightsRequest

    with torch.device("meta"):
        model = build(entry, WeightsRequest("random", "random"), None).modules()[0]
    tower = getattr(model, "visual", None) or getattr(model, "vision_model", None) or model
    return round(sum(p.numel() for p in tower.parameters()) / 1e6, 2)


def _validated(run, where: str) -> dict:
    if not isinstance(run, dict):
        raise VitbenchError(f"{where}: expected a JSON object with {', '.join(REQUIRED)}")
    missing = [key for key in REQUIRED if key not in run]
    if missing:
        raise VitbenchError(f"{where}: missing {', '.join(missing)} (needs "
                            f"{', '.join(f'{k}: {t.__name__}' for k, t in REQUIRED.items())})")
    for key, kind in REQUIRED.items():
        value = run[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise VitbenchError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
    if run["resolution"] < 1 or run["step"] < 0 or not run["objective"].strip():
        raise VitbenchError(f"{where}: needs resolution >= 1, step >= 0 and an objective name")
    return run


def _module(encoder_or_model, name: str) -> torch.nn.Module:
    if isinstance(encoder_or_model, torch.nn.Module):
        return encoder_or_model
    if isinstance(encoder_or_model, Encoder):
        modules = encoder_or_model.modules()
        if len(modules) == 1:
            return modules[0]
        raise VitbenchError(f"{name}: the encoder has {len(modules)} modules; pass the one "
                            "whose state dict the entry loads")
    raise VitbenchError(f"save_run_encoder takes an Encoder or a torch.nn.Module, got "
                        f"{type(encoder_or_model).__name__}")


def _plain_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU tensors that each own their memory: safetensors refuses tensors that share storage
    (tied weights, views into one buffer)."""
    state, seen = {}, set()
    for key, value in module.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        state[key] = tensor
    if not state:
        raise VitbenchError("nothing to save: the encoder has no weights")
    return state
