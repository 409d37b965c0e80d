"""MoDE: a mixture of CLIP data experts, ensembled per task by its class names.

Ma et al., "MoDE: CLIP Data Experts via Clustering", arXiv:2404.16030; official code in
github.com/facebookresearch/MetaCLIP, apps/mode. Training clusters the captions twice in a text
embedding space (sup-SimCSE BERT-base, `pooler_output`): k-means into F fine-grained clusters
(1024), then the F fine centres into N coarse clusters, one per expert; expert k is a CLIP
trained only on the pairs whose caption lies in coarse cluster k. No MoDE weights are released.

Zero-shot classification routes by task metadata (apps/mode/post_report_ensemble.py): each class
name is embedded with the clustering text model (mean of its L2-normalised template embeddings,
renormalised); d_c, f_c = the Euclidean distance to, and index of, its nearest fine centre;
expert(c) = the coarse cluster of f_c. With n classes,

    bias  = exp(0.5 - sqrt(n)) if n < 10 else 0,    sharp = scale * log10(max(10, n - many))
    vote_k = sum over classes c with expert(c) = k of exp((bias - d_c) * sharp)  (0 if none)
    w = softmax(vote / temperature)                 (scale 5, temperature 8, many 200)

and the ensemble's logits are sum_k w_k * logits_k, where logits_k are expert k's cosine
similarities (no logit scale) between the normalised image embedding and the class text
embeddings (mean of normalised template embeddings, renormalised), as MetaCLIP's clipeval.

Features for the task-free protocols (kNN, linear, retrieval), where there is nothing to route
by: `pooled` concatenates the experts' pooled features (N x width), `tokens` their patch tokens
along the channels; `projected` and `forward_text` concatenate the experts' L2-normalised
joint-space embeddings divided by sqrt(N), so the cosine between an image and a text is the
uniform (unrouted) average of the experts' cosines, MoDE's "all experts" baseline.

Weights directory (`MoDE.from_directory`, or `vitbench.load(name, pretrained=DIR)`):

    mode.json            {"experts": [zoo names, e.g. "clip_b16", ...],
                          "routing": {"scale": 5.0, "temperature": 8.0, "many_classes": 200}}
    centres.safetensors  fine (F, D) float, assign (F,) int64 = expert of each fine centre,
                         coarse (N, D) float -- or the official prep_hrchy.py outputs
                         F<F>.pth ({"center"}) and F<F>-C<N>.pth ({"coarse", "assign"})
    expert_<k>           k = 0 .. N-1: an open_clip checkpoint of that zoo entry, as a file
                         (expert_<k>.safetensors / .pt / .bin) or a directory (open_clip's
                         open_clip_model.safetensors, or MetaCLIP training's
                         checkpoints/epoch_latest.pt)
    router/              optional: the routing text model as a transformers directory
                         (config.json, weights, tokenizer files of sup-simcse-bert-base-uncased)

vitbench's own layout is one file: this module's state_dict (experts.<k>.<open_clip key>,
fine, assign, coarse) saved as safetensors; the routing constants then come from the entry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.contract import Encoder, ImageFeatures
from vitbench.errors import VitbenchError
from vitbench.zoo.reference.base import ReferenceModel
from vitbench.zoo.weights import CHECKPOINT_SUFFIXES, find_checkpoint, load_state_dict

LAYOUT_FILE = "mode.json"
CENTRES_FILE = "centres.safetensors"
ROUTER_FILES = ("router/ in the weights directory: a transformers directory with the routing "
                "text model (sup-simcse-bert-base-uncased: config.json, weights, tokenizer)")

ClassNames = Sequence[str | Sequence[str]]  # a class: one name, or several synonyms


@dataclass(frozen=True)
class Routing:
    """The constants of the official ensemble (post_report_ensemble.py: smooth_weight =
    [scale, temperature], too_many_class = many_classes)."""

    scale: float = 5.0
    temperature: float = 8.0
    many_classes: int = 200

    @classmethod
    def from_dict(cls, values: dict | None) -> Routing:
        names = {f.name for f in fields(cls)}
        unknown = set(values or {}) - names
        if unknown:
            raise VitbenchError(f"unknown MoDE routing settings {sorted(unknown)}; accepted: "
                                f"{', '.join(sorted(names))}")
        return cls(**(values or {}))


class MoDE(ReferenceModel):
    """N CLIP experts (zoo entries) and the caption clusters that route tasks to them.

    Args:
        experts: zoo names of the experts (each a CLIP-style entry with a text tower; they
            must share one preprocessing). Built with random weights until loaded.
        fine_clusters: F, the number of fine-grained centres.
        route_dim: D, the width of the routing text embedding (768 for SimCSE BERT-base).
        routing: the ensemble's constants (`Routing`); defaults are the official ones.
        weights: a weights directory (module docstring) to load the experts, centres and
            router from; None: random experts and centres.
    """

    def __init__(self, experts: Sequence[str] = ("clip_b16",) * 4, fine_clusters: int = 1024,
                 route_dim: int = 768, routing: dict | None = None,
                 weights: str | Path | None = None):
        super().__init__()
        self.expert_names = tuple(experts)
        if not self.expert_names:
            raise VitbenchError("MoDE needs at least one expert")
        n = len(self.expert_names)
        self._install([_build_expert(name, None if weights is None
                                     else expert_weights(Path(weights), k))
                       for k, name in enumerate(self.expert_names)])
        # random centres (a random model routes somewhere, not always to expert 0)
        self.register_buffer("fine", F.normalize(torch.randn(fine_clusters, route_dim), dim=-1))
        self.register_buffer("assign", torch.arange(fine_clusters) % n)
        self.register_buffer("coarse", F.normalize(torch.randn(n, route_dim), dim=-1))
        self.routing = Routing.from_dict(routing)
        self._router: tuple[nn.Module, Any] | None = None  # not a submodule: not in state_dict
        if weights is not None:
            self._load_centres_and_router(Path(weights))

    def _install(self, encoders: list[Encoder]) -> None:
        """Hold the experts' encoders (their adapters' forward code) and register their
        models, so that state_dict and `.to` see the weights."""
        first = encoders[0].spec
        for encoder in encoders:
            spec = encoder.spec
            if not spec.has_text:
                raise VitbenchError(f"MoDE experts are CLIP models; {spec.name} has no text tower")
            same = ("input_size", "mean", "std", "resize_mode", "crop_pct", "patch_size")
            if any(getattr(spec, k) != getattr(first, k) for k in same):
                raise VitbenchError(f"MoDE experts must share one preprocessing and patch grid; "
                                    f"{spec.name} differs from {first.name}")
        self._encoders = encoders
        self.experts = nn.ModuleList(encoder.modules()[0] for encoder in encoders)

    # -- weights ------------------------------------------------------------------------------

    @classmethod
    def from_directory(cls, path: str | Path) -> MoDE:
        """A MoDE built from the experts, centres and settings a weights directory holds."""
        layout = _read_layout(Path(path))
        fine = read_centres(Path(path), len(layout["experts"]))["fine"]
        return cls(layout["experts"], *fine.shape, routing=layout.get("routing"), weights=path)

    def load_directory(self, path: str | Path) -> None:
        """Loader hook for a weights directory: the layout in the module docstring, or (no
        mode.json) a directory holding vitbench's own single-file layout."""
        path = Path(path)
        if not (path / LAYOUT_FILE).is_file():
            from vitbench.zoo.adapters.reference import load_into

            file = find_checkpoint(path, ("model.safetensors",))
            load_into(self, load_state_dict(file), f"weights {file}", "MoDE")
            return
        layout = _read_layout(path)
        if tuple(layout["experts"]) != self.expert_names:
            raise VitbenchError(f"{path} holds the experts {layout['experts']}, this MoDE is "
                                f"built for {list(self.expert_names)}: use "
                                "MoDE.from_directory for other experts")
        self._install([_build_expert(name, expert_weights(path, k))
                       for k, name in enumerate(self.expert_names)])
        self.routing = Routing.from_dict(layout.get("routing"))
        self._load_centres_and_router(path)

    def _load_centres_and_router(self, path: Path) -> None:
        for key, value in read_centres(path, len(self.expert_names)).items():
            setattr(self, key, value.to(self.fine.device))  # F may differ: replace the buffers
        if (path / "router").is_dir():
            self.set_router(path / "router")

    def set_router(self, model: nn.Module | str | Path, tokenizer: Any = None) -> None:
        """The text model that embeds class names for routing: a transformers model with its
        tokenizer, or a directory holding both."""
        if isinstance(model, str | Path):
            from transformers import AutoModel, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
                model = AutoModel.from_pretrained(model, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise VitbenchError(f"cannot read the MoDE router from {model} "
                                    f"({type(exc).__name__}); expected {ROUTER_FILES}") from exc
        if tokenizer is None:
            raise VitbenchError("set_router needs the router's tokenizer too")
        self._router = (model.eval(), tokenizer)

    # -- features -----------------------------------------------------------------------------

    def image_tower(self) -> nn.Module:
        """The experts' image towers (what params_m counts)."""
        return nn.ModuleList(expert.visual for expert in self.experts)

    def _on(self, device: torch.device) -> list[Encoder]:
        for encoder in self._encoders:  # the adapters put text tokens on `encoder.device`
            encoder.device = device
        return self._encoders

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        if layers:
            raise VitbenchError("MoDE gives no per-layer features (its experts are separate "
                                "models)")
        outs = [encoder._forward(pixels) for encoder in self._on(pixels.device)]
        tokens = [o.tokens for o in outs]
        same_grid = all(t is not None and t.shape[:2] == tokens[0].shape[:2] for t in tokens)
        return ImageFeatures(
            pooled=torch.cat([o.pooled for o in outs], dim=1),
            tokens=torch.cat(tokens, dim=2) if same_grid else None,
            projected=self._joint([o.projected for o in outs]))

    def forward_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._joint([encoder._text(list(texts)) for encoder in self._on(self.fine.device)])

    def _joint(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """Normalised expert embeddings side by side, / sqrt(N): dot products average them."""
        scale = math.sqrt(len(embeddings))
        return torch.cat([F.normalize(e, dim=-1) for e in embeddings], dim=1) / scale

    # -- zero-shot classification (the routed ensemble) ---------------------------------------

    @torch.no_grad()
    def expert_logits(self, pixels: torch.Tensor, class_names: ClassNames,
                      templates: Sequence[str] = ("{}",)) -> torch.Tensor:
        """(N, B, C): each expert's cosine similarities between images and classes."""
        prompts = _prompts(class_names, templates)
        logits = []
        for encoder in self._on(pixels.device):
            image = F.normalize(encoder._forward(pixels).projected, dim=-1)
            texts = F.normalize(encoder._text([p for group in prompts for p in group]), dim=-1)
            classes = _mean_per_class(texts, [len(group) for group in prompts])
            logits.append(image @ classes.T)
        return torch.stack(logits)

    @torch.no_grad()
    def embed_classes(self, class_names: ClassNames,
                      templates: Sequence[str] = ("{}",)) -> torch.Tensor:
        """(C, D): class-name embeddings in the clustering space, as the router computes them."""
        if self._router is None:
            raise VitbenchError(f"MoDE routing embeds class names with its clustering text "
                                f"model, and none is loaded: put {ROUTER_FILES}, call "
                                "set_router, or pass class_embeddings")
        model, tokenizer = self._router
        prompts = _prompts(class_names, templates)
        flat = [p for group in prompts for p in group]
        inputs = tokenizer(flat, padding=True, truncation=True, return_tensors="pt")
        device = next(model.parameters()).device
        out = model(**{k: v.to(device) for k, v in inputs.items()}).pooler_output
        return _mean_per_class(F.normalize(out, dim=-1), [len(group) for group in prompts])

    @torch.no_grad()
    def routing_weights(self, class_embeddings: torch.Tensor) -> torch.Tensor:
        """(N,) ensemble weights for a task whose classes embed to `class_embeddings` (C, D)."""
        fine = self.fine.double()
        if class_embeddings.ndim != 2 or class_embeddings.shape[1] != fine.shape[1]:
            raise VitbenchError(f"class embeddings must be (classes, {fine.shape[1]}) like the "
                                f"fine centres, got {tuple(class_embeddings.shape)}")
        distance, nearest = torch.cdist(class_embeddings.to(fine), fine).min(dim=1)
        n, settings = len(class_embeddings), self.routing
        bias = math.exp(0.5 - math.sqrt(n)) if n < 10 else 0.0
        sharp = settings.scale * math.log10(max(10, n - settings.many_classes))
        votes = torch.zeros(len(self.expert_names), dtype=fine.dtype, device=fine.device)
        votes.index_add_(0, self.assign[nearest], torch.exp((bias - distance) * sharp))
        return torch.softmax(votes / settings.temperature, dim=0).float()

    @torch.no_grad()
    def zero_shot_logits(self, pixels: torch.Tensor, class_names: ClassNames,
                         templates: Sequence[str] = ("{}",),
                         class_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C): the experts' logits averaged with the task's routing weights.

        Args:
            pixels: (B, 3, H, W) images after the encoder's transform.
            class_names: one name (or list of synonyms) per class.
            templates: prompt templates with one "{}" each, e.g. "a photo of a {}.".
            class_embeddings: (C, D) routing embeddings of the classes; default: the router's.
        """
        if class_embeddings is None:
            class_embeddings = self.embed_classes(class_names, templates)
        weights = self.routing_weights(class_embeddings).to(pixels.device)
        return torch.einsum("n,nbc->bc", weights, self.expert_logits(pixels, class_names,
                                                                     templates))


def _prompts(class_names: ClassNames, templates: Sequence[str]) -> list[list[str]]:
    """Every template filled with every name of each class (MetaCLIP's clipeval order)."""
    if not class_names or not templates:
        raise VitbenchError("zero-shot classification needs class names and templates")
    groups = [[name] if isinstance(name, str) else list(name) for name in class_names]
    return [[t.format(name) for t in templates for name in group] for group in groups]


def _mean_per_class(embeddings: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Mean of each class's (already normalised) prompt embeddings, renormalised."""
    means = [chunk.mean(dim=0) for chunk in torch.split(embeddings, counts)]
    return F.normalize(torch.stack(means), dim=-1)


# -- the directory layout ---------------------------------------------------------------------


def _build_expert(name: str, weights: Path | None) -> Encoder:
    """A zoo encoder, built as `vitbench.load` builds it but left where torch's default device
    puts it (so a MoDE can be built on the meta device)."""
    from vitbench.zoo.registry import build, get_entry
    from vitbench.zoo.weights import WeightsRequest, parse_pretrained

    entry = get_entry(name)
    request = (WeightsRequest("random", "random") if weights is None
               else parse_pretrained(weights, entry.spec))
    return build(entry, request, None)


def _read_layout(path: Path) -> dict:
    file = path / LAYOUT_FILE
    if not file.is_file():
        raise VitbenchError(f"{path} is not a MoDE weights directory (no {LAYOUT_FILE})")
    try:
        layout = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise VitbenchError(f"{file} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    experts = layout.get("experts") if isinstance(layout, dict) else None
    if not experts or not all(isinstance(name, str) for name in experts):
        raise VitbenchError(f"{file} must name the experts: {{\"experts\": [\"clip_b16\", ...]}}")
    return layout


def expert_weights(path: Path, k: int) -> Path:
    """Expert k's checkpoint: a file expert_<k>.<suffix> or a directory expert_<k>/."""
    directory = path / f"expert_{k}"
    if directory.is_dir():
        trained = directory / "checkpoints" / "epoch_latest.pt"  # MetaCLIP's training output
        return trained if trained.is_file() else directory
    for suffix in CHECKPOINT_SUFFIXES:
        if (path / f"expert_{k}{suffix}").is_file():
            return path / f"expert_{k}{suffix}"
    raise VitbenchError(f"{path} has no checkpoint for expert {k} (expert_{k}.safetensors, "
                        f".pt, .bin, or a directory expert_{k}/)")


def read_centres(path: Path, n_experts: int) -> dict[str, torch.Tensor]:
    """fine (F, D), assign (F,), coarse (N, D) from centres.safetensors or the official files."""
    if (path / CENTRES_FILE).is_file():
        state = load_state_dict(path / CENTRES_FILE)
    else:
        hierarchy = sorted(path.glob("F*-C*.pth"))
        fine = path / f"{hierarchy[0].name.split('-')[0]}.pth" if len(hierarchy) == 1 else None
        if fine is None or not fine.is_file():
            raise VitbenchError(f"{path} holds no cluster centres ({CENTRES_FILE}, or MoDE's "
                                "F<F>.pth and F<F>-C<N>.pth)")
        hierarchy = load_state_dict(hierarchy[0])
        state = {"fine": load_state_dict(fine).get("center"), "coarse": hierarchy.get("coarse"),
                 "assign": hierarchy.get("assign")}
    fine, assign, coarse = (state.get(k) for k in ("fine", "assign", "coarse"))
    if fine is None or assign is None or coarse is None:
        raise VitbenchError(f"the MoDE centres in {path} need fine, assign and coarse tensors")
    if (fine.ndim != 2 or assign.shape != fine.shape[:1] or coarse.shape != (n_experts,
                                                                             fine.shape[1])
            or int(assign.min()) < 0 or int(assign.max()) >= n_experts):
        raise VitbenchError(f"the MoDE centres in {path} do not fit {n_experts} experts: fine "
                            f"{tuple(fine.shape)}, assign {tuple(assign.shape)}, coarse "
                            f"{tuple(coarse.shape)}")
    return {"fine": fine.float(), "assign": assign.long(), "coarse": coarse.float()}
