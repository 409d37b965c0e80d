"""`open_clip_entry`: the one way an open_clip-backed entry is registered.

Facts are stated in the family files and checked against open_clip by tests/test_zoo.py and
tests/test_zoo_open_clip_families.py: mean/std/resize_mode/hf_hub from
`open_clip.get_pretrained_cfg(arch, tag)`, params_m = parameters of `model.visual` (its
projection included), size_mb = fp32 size of the whole model (image and text towers).

The image tower decides what the features are (see zoo/adapters/open_clip.py):
  "vit"    open_clip's own VisionTransformer: pooled = the tower's output before the
           projection (width embed_dim), tokens = patch tokens; other resolutions interpolate
           the position embeddings (force_image_size).
  "timm"   a timm trunk (EVA-CLIP, SigLIP): pooled = the trunk's pooled output (width
           embed_dim), projected = the adapter head's output (the same tensor when the head
           is an identity, as SigLIP's), tokens = the trunk's patch tokens; fixed resolution.
  "resnet" OpenAI's ModifiedResNet: its attention pool already projects, so pooled =
           projected; tokens = the last stage's feature map; fixed resolution.
"""

from vitbench.contract import EncoderSpec, Supervision, WeightsSource
from vitbench.zoo.adapters.open_clip import CHECKPOINT_FILES
from vitbench.zoo.families._common import OPENAI_MEAN, OPENAI_STD, fp32_mb
from vitbench.zoo.registry import register

TOWERS = ("vit", "timm", "resnet")
PROJECTED_ONLY = "pooled = projected: the attention pool of the ResNet tower projects"


def open_clip_entry(
    name: str,
    arch: str,
    tag: str,
    *,
    family: str,
    hub: str,
    params_m: float,
    total_m: float,
    projection_dim: int,
    data: str,
    paper: str,
    tower: str = "vit",
    embed_dim: int | None = None,
    input_size: int = 224,
    patch_size: int | None = None,
    mean=OPENAI_MEAN,
    std=OPENAI_STD,
    resize_mode: str = "shortest",
    license: str = "",
    notes: str = "",
    **facts,
) -> EncoderSpec:
    """Register open_clip's `arch` with its published weights `tag` (stored at hf.co/`hub`).

    `embed_dim` is the width of the pre-projection pooled output: required for "vit" and
    "timm" towers, implied (= projection_dim) for "resnet". `total_m` (the whole model's
    parameters, in millions) sizes the download. `facts`: gflops, published_params_m,
    params_source.
    """
    if tower not in TOWERS:
        raise ValueError(f"{name}: tower must be one of {TOWERS}, got {tower!r}")
    if (tower == "resnet") == (embed_dim is not None):
        raise ValueError(f"{name}: embed_dim is stated for 'vit' and 'timm' towers only")
    if tower == "resnet":
        notes = f"{PROJECTED_ONLY}; {notes}" if notes else PROJECTED_ONLY
    return register(
        EncoderSpec(
            name=name,
            family=family,
            supervision=Supervision.WEAKLY,
            backend="open_clip",
            backend_id=arch,
            weights=WeightsSource(tag, hub, CHECKPOINT_FILES, fp32_mb(total_m)),
            input_size=input_size,
            mean=mean,
            std=std,
            resize_mode=resize_mode,
            patch_size=patch_size,
            embed_dim=embed_dim or projection_dim,
            projection_dim=projection_dim,
            params_m=params_m,
            pretraining_data=data,
            paper=paper,
            dynamic_resolution=tower == "vit",
            license=license,
            notes=notes,
            **facts,
        )
    )
