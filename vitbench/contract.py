"""The Encoder contract: every zoo entry, whatever its backend, is one of these.

An `Encoder` carries a frozen `EncoderSpec` (facts about the architecture and its weights), its
own eval preprocessing (`transform`), and one way to encode pixels that always returns the same
type, `ImageFeatures`. Eval code never guesses mean/std or resolution and never indexes tuples.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from vitbench.errors import VitbenchError


class Supervision(str, enum.Enum):
    """How the weights were trained: the first column of every comparison table."""

    FULLY = "fully"  # class labels
    WEAKLY = "weakly"  # image-text pairs
    SELF = "self"  # no labels
    NONE = "none"  # baselines with nothing learned (raw pixels)
    UNKNOWN = "unknown"  # bring-your-own models: vitbench cannot know how they were trained


@dataclass(frozen=True)
class WeightsSource:
    """Where the published weights of an entry live and how big they are."""

    tag: str  # e.g. "augreg_in21k_ft_in1k"; "" when the entry has no published weights
    hf_hub_id: str | None = None  # Hugging Face repo that holds them
    filenames: tuple[str, ...] = ()  # candidate files in that repo, preferred first
    size_mb: float = 0.0  # approximate download size, for the "how to supply" message
    local: str | None = None  # weights that live in a local directory (bring-your-own hf:)


@dataclass(frozen=True)
class EncoderSpec:
    """Facts about one zoo entry. Facts about weights never hide in code paths."""

    name: str
    family: str
    supervision: Supervision
    backend: str  # timm | open_clip | transformers | pixels
    backend_id: str  # the backend's own architecture name
    weights: WeightsSource
    input_size: int  # native square input resolution (pixels)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embed_dim: int  # width of ImageFeatures.pooled
    params_m: float  # parameters of the image tower, millions
    pretraining_data: str
    paper: str
    patch_size: int | None = None
    projection_dim: int | None = None  # width of ImageFeatures.projected (dual encoders)
    crop_pct: float = 1.0  # eval resize to size/crop_pct, then centre crop
    # "shortest" (+ centre crop), "squash" (both sides), or "patches": keep the aspect ratio
    # and resize to at most (input_size / patch_size)^2 patches, sides multiples of the patch
    # size, no crop (NaViT-style encoders; see `variable_size`)
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    # True when the architecture adapts to another input size by interpolating its position
    # embeddings; otherwise a resolution override only changes the resize in `transform`.
    dynamic_resolution: bool = False
    license: str = ""
    notes: str = ""
    # GFLOPs of one image-tower forward at input_size, counted as multiply-accumulates (the
    # convention of the papers' tables: ViT-B/16 at 224 px = 17.6); matmuls and convolutions.
    gflops: float | None = None
    # the parameter count the paper/model card publishes for this tower, and where it says so
    published_params_m: float | None = None
    params_source: str = ""

    @property
    def has_text(self) -> bool:
        return self.projection_dim is not None

    @property
    def variable_size(self) -> bool:
        """True when images keep their own size (NaViT-style): `transform` gives (3, H_i, W_i)
        tensors of different sizes and `encode_image` takes a list of them."""
        return self.resize_mode == "patches"

    def summary(self, long: bool = False) -> dict[str, Any]:
        """One row of `vitbench list` (and, with long=True, of docs/zoo.md)."""
        row = {"name": self.name, "family": self.family, "supervision": self.supervision.value,
               "backend": self.backend, "params_m": self.params_m,
               "resolution": self.input_size, "embed_dim": self.embed_dim,
               "weights": self.weights.tag}
        if long:
            row.update({"gflops": self.gflops or "",
                        "published_params_m": self.published_params_m or "",
                        "backend_id": self.backend_id, "hub": self.weights.hf_hub_id or "",
                        "patch": self.patch_size or "", "proj_dim": self.projection_dim or "",
                        "data": self.pretraining_data, "paper": self.paper,
                        "license": self.license})
        return row

    def to_record(self) -> dict[str, Any]:
        """Flat dict for tables and `vitbench info`."""
        record = asdict(self)
        record["supervision"] = self.supervision.value
        weights = record.pop("weights")
        record.update({f"weights_{k}": v for k, v in weights.items()})
        return record


@dataclass(frozen=True)
class LoadedWeights:
    """What an Encoder instance actually holds: part of every cache key and result row."""

    kind: str  # "random" | "file" | "hub"
    tag: str  # the weights tag, "random", or the file name
    identity: str  # seed, or content hash of the file: a different file is a different key

    def __str__(self) -> str:
        return f"{self.kind}:{self.tag}"


@dataclass
class LayerOutput:
    """One transformer block's output, after the final norm (as DINOv2's linear eval reads it).

    Attributes:
        index: the block index as requested (negative counts from the last block).
        cls: (B, D) class token, or None for models without one.
        tokens: (B, N, D) patch tokens (class and register tokens removed).
    """

    index: int
    cls: torch.Tensor | None
    tokens: torch.Tensor


@dataclass
class ImageFeatures:
    """What `encode_image` returns, always.

    Attributes:
        pooled: (B, D) image embedding used by kNN / linear probes (timm: pre-logits; CLIP-style:
            the image tower's output before projection).
        tokens: (B, N, D_tok) patch tokens without prefix (class/register) tokens, or None for
            encoders that have none.
        projected: (B, P) joint image-text space embedding for dual encoders, else None.
        layers: per-block outputs when `encode_image(..., layers=[...])` asked for them.
        token_mask: (B, N) bool, True for real tokens, when `tokens` holds a batch of images
            with different token counts (a list given to a variable-size encoder): each row
            is padded (with zeros) to the longest. None: every token is real.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    projected: torch.Tensor | None = None
    layers: tuple[LayerOutput, ...] = ()
    token_mask: torch.Tensor | None = None

    def get(self, kind: str) -> torch.Tensor:
        value = getattr(self, kind, None) if kind in FEATURE_KINDS else None
        if value is None:
            raise VitbenchError(f"these features have no {kind!r} part (kinds: {FEATURE_KINDS})")
        return value


FEATURE_KINDS = ("pooled", "tokens", "projected")

Transform = Callable[[Any], torch.Tensor]


@dataclass(kw_only=True, repr=False)
class Encoder(ABC):
    """One encoder: spec, preprocessing, and `encode_image` returning `ImageFeatures`.

    Subclasses (the backend adapters) implement `_forward` and, for dual encoders, `_text`.
    `encode_image` adds no-grad, device and autocast handling around them, so every backend
    behaves the same way.
    """

    spec: EncoderSpec
    loaded: LoadedWeights
    transform: Transform
    resolution: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def _forward(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        """Final features, plus the blocks in `layers` (adapters that cannot: `_no_layers`).

        `pixels` is a list of (3, H_i, W_i) images only for `spec.variable_size` encoders.
        """

    @abstractmethod
    def modules(self) -> list[torch.nn.Module]:
        """The torch modules this encoder runs (moved by `to`)."""

    def _text(self, texts: Sequence[str]) -> torch.Tensor:
        raise VitbenchError(f"{self.spec.name} has no text tower (it is an image-only encoder)")

    def _no_layers(self, layers: tuple[int, ...]) -> None:
        if layers:
            raise VitbenchError(f"{self.spec.name}: per-layer features are available for "
                                "ViT-style encoders (timm, open_clip ViT towers); not for this "
                                f"{self.spec.backend} architecture")

    # -- public surface ------------------------------------------------------------------

    def to(self, device: str | torch.device = "cpu", dtype: str | torch.dtype = "fp32") -> Encoder:
        """Move to a device and pick the compute dtype (fp32, or bf16/fp16 autocast)."""
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        for module in self.modules():
            module.to(self.device).eval()
        return self

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor | Sequence[torch.Tensor],
                     layers: Sequence[int] = (), tokens: bool = True) -> ImageFeatures:
        """Encode a preprocessed batch (B, 3, H, W); features come back as fp32 on CPU.

        Args:
            pixels: images after `transform`, stacked; for variable-size encoders
                (`spec.variable_size`, NaViT-style) also a list of (3, H_i, W_i) images, whose
                tokens come back padded with `ImageFeatures.token_mask`.
            layers: block indices whose outputs to add as `ImageFeatures.layers`
                (e.g. [-4, -3, -2, -1], as DINOv2 probes its last four blocks).
            tokens: False leaves `tokens` None. On a GPU, copying the (B, N, D) patch tokens
                to the host takes longer than the forward pass itself (benchmarks/RESULTS.md).
        """
        if isinstance(pixels, torch.Tensor):
            pixels = pixels.to(self.device, non_blocking=True)
        elif not self.spec.variable_size:
            raise VitbenchError(f"{self.spec.name} takes one stacked (B, 3, H, W) tensor; only "
                                "variable-size (NaViT-style) encoders take a list of images")
        else:
            pixels = [image.to(self.device, non_blocking=True) for image in pixels]
            if not pixels:
                raise VitbenchError("encode_image got an empty list of images")
        with self._autocast():
            out = self._forward(pixels, tuple(layers))

        def cpu(t):
            return None if t is None else t.float().cpu()

        return ImageFeatures(cpu(out.pooled), cpu(out.tokens) if tokens else None,
                             cpu(out.projected),
                             tuple(LayerOutput(lo.index, cpu(lo.cls), cpu(lo.tokens))
                                   for lo in out.layers),
                             None if out.token_mask is None or not tokens
                             else out.token_mask.cpu())

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embed texts into the joint space (dual encoders only), fp32 on CPU, `batch_size`
        texts per forward (a retrieval set has tens of thousands of captions)."""
        texts = list(texts)
        with self._autocast():
            return torch.cat([self._text(texts[i:i + batch_size]).float().cpu()
                              for i in range(0, max(len(texts), 1), batch_size)])

    def encode(self, images: Iterable[Any], batch_size: int = 64) -> ImageFeatures:
        """Encode PIL images (or anything `transform` accepts), batching for you."""
        from vitbench.features import encode_images

        return encode_images(self, images, batch_size=batch_size)

    def _autocast(self):
        if self.dtype == torch.float32:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"Encoder({self.spec.name}, weights={self.loaded}, resolution={self.resolution})"


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise VitbenchError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise VitbenchError(f"unknown device {str(device)!r}; accepted: cpu, cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VitbenchError("device 'cuda' asked for, but torch sees no CUDA device here")
    return device
