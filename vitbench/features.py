"""Feature extraction with an on-disk cache: each (encoder + weights, data, transform, dtype,
feature kinds) is encoded once.

Layout: `<cache>/features/<key>/` holds `meta.json` (the key's fields, for humans),
`shard-NNNNN.safetensors` (fixed index ranges, each written atomically: a killed run resumes
at the first missing shard) and `complete.json` (written last). The key hashes the encoder's
weights identity (content hash for files), the transform, the resolution and the dataset's
content fingerprint, so changed weights or data can never be served stale features.

Variable-size encoders (`spec.variable_size`, NaViT-style) see each image at its own size and
give each its own number of tokens: their batches travel as lists, and only the fixed-width
kinds (`pooled`, `projected`) are cached. `encode_images` returns their tokens padded, with
`ImageFeatures.token_mask`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from vitbench.contract import FEATURE_KINDS, Encoder, ImageFeatures, dtype_name
from vitbench.data.base import ImageDataset
from vitbench.errors import BadImageError, VitbenchError
from vitbench.io import atomic_write, atomic_write_json

CACHE_FORMAT = 1
SHARD_SIZE = 1024  # images per shard: the unit of resume


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """--cache-dir, else $VITBENCH_CACHE, else $XDG_CACHE_HOME/vitbench, else ~/.cache/vitbench."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("VITBENCH_CACHE"):
        return Path(os.environ["VITBENCH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "vitbench"


@dataclass(frozen=True)
class ExtractOptions:
    batch_size: int = 64
    num_workers: int = 0
    skip_bad_images: bool = False
    cache_dir: str | None = None
    use_cache: bool = True
    progress: bool = True


@dataclass
class FeatureSet:
    """Features of one dataset split; rows follow `index` (bad images skipped on request)."""

    index: np.ndarray  # dataset indices of the rows
    pooled: np.ndarray | None = None
    tokens: np.ndarray | None = None
    projected: np.ndarray | None = None
    n_bad: int = 0
    cache_hit: bool = False
    seconds: float = 0.0  # encoding time of this call (0 on a full cache hit)
    key: str = ""

    views: dict[str, np.ndarray] = field(default_factory=dict)  # FeatureView kinds

    def get(self, kind: str) -> np.ndarray:
        value = getattr(self, kind, None) if kind in FEATURE_KINDS else self.views.get(kind)
        if value is None:
            raise VitbenchError(f"no {kind!r} features were extracted")
        return value


POOLINGS = ("cls", "mean", "cls+mean")


@dataclass(frozen=True)
class FeatureView:
    """A vector per image built from block outputs: `pooling` of each of `layers`, concatenated.

    Written as a feature kind "<pooling>@<layers>", e.g. "cls@-1", "mean@-1" or
    "cls+mean@-4,-3,-2,-1" (DINOv2-style probing of the last four blocks). The plain kinds
    "pooled", "tokens" and "projected" are the encoder's own outputs.
    """

    pooling: str
    layers: tuple[int, ...]

    @classmethod
    def parse(cls, kind: str) -> FeatureView | None:
        """The view a kind names, None for the plain kinds; a one-line error if malformed."""
        if kind in FEATURE_KINDS:
            return None
        pooling, at, layers = kind.partition("@")
        try:
            indices = tuple(int(i) for i in layers.split(",")) if at else (-1,)
        except ValueError:
            indices = ()
        if pooling not in POOLINGS or not indices:
            raise VitbenchError(f"unknown feature kind {kind!r}; accepted: "
                                f"{', '.join(FEATURE_KINDS)}, or <{'|'.join(POOLINGS)}>@<layers> "
                                "such as cls+mean@-4,-3,-2,-1")
        return cls(pooling, indices)

    def select(self, feats: ImageFeatures, name: str) -> torch.Tensor:
        by_index = {layer.index: layer for layer in feats.layers}
        parts = []
        for index in self.layers:
            layer = by_index[index]
            if "cls" in self.pooling:
                if layer.cls is None:
                    raise VitbenchError(f"{name} has no class token: use mean@<layers>")
                parts.append(layer.cls)
            if "mean" in self.pooling:
                parts.append(layer.tokens.mean(dim=1))
        return torch.cat(parts, dim=1)


def cache_key(encoder: Encoder, dataset: ImageDataset, kinds: tuple[str, ...]) -> tuple[str, dict]:
    fields = {
        "format": CACHE_FORMAT,
        "encoder": encoder.spec.name,
        "backend_id": f"{encoder.spec.backend}:{encoder.spec.backend_id}",
        "weights": asdict(encoder.loaded),
        "resolution": encoder.resolution,
        "transform": repr(encoder.transform),
        "dtype": dtype_name(encoder.dtype),
        "dataset": dataset.fingerprint,
        "split": dataset.split,
        "n": len(dataset),
        "kinds": sorted(kinds),
    }
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24], fields


def extract_features(encoder: Encoder, dataset: ImageDataset, kinds: tuple[str, ...] = ("pooled",),
                     options: ExtractOptions = ExtractOptions()) -> FeatureSet:
    """Encode a dataset split once; later calls with the same key read the cache."""
    for kind in kinds:
        FeatureView.parse(kind)  # reject malformed kinds before any work
    varying = [k for k in kinds if k not in ("pooled", "projected")]
    if encoder.spec.variable_size and varying:
        raise VitbenchError(f"{encoder.spec.name} encodes each image at its own size, so its "
                            f"token counts differ: only 'pooled' and 'projected' features are "
                            f"extracted and cached, not {', '.join(map(repr, varying))}")
    key, fields = cache_key(encoder, dataset, tuple(kinds))
    if not options.use_cache:
        start = time.perf_counter()
        parts = [_encode_range(encoder, dataset, kinds, range(len(dataset)), options)]
        return _assemble(parts, kinds, options, key, hit=False, seconds=time.perf_counter() - start)
    entry = cache_root(options.cache_dir) / "features" / key
    entry.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry / ".lock")):  # two runs on one key: the second waits, then reads
        if (entry / "complete.json").exists():
            return _assemble(_read_shards(entry), kinds, options, key, hit=True, seconds=0.0)
        atomic_write_json(entry / "meta.json", fields)
        start, resumed = time.perf_counter(), False
        for shard, lo in enumerate(range(0, len(dataset), SHARD_SIZE)):
            path = entry / f"shard-{shard:05d}.safetensors"
            if path.exists():
                resumed = True
                continue
            rows = range(lo, min(lo + SHARD_SIZE, len(dataset)))
            _write_shard(path, _encode_range(encoder, dataset, kinds, rows, options))
        seconds = time.perf_counter() - start
        atomic_write_json(entry / "complete.json", {"n": len(dataset), "resumed": resumed})
        return _assemble(_read_shards(entry), kinds, options, key, hit=False, seconds=seconds)


@dataclass
class _Part:
    arrays: dict[str, np.ndarray]  # kind -> rows, plus "index"
    bad: list[str]  # descriptions (paths) of images that could not be decoded


def _encode_range(encoder: Encoder, dataset: ImageDataset, kinds, rows: range,
                  options: ExtractOptions) -> _Part:
    loader = torch.utils.data.DataLoader(
        _Decoded(dataset, encoder.transform, rows), batch_size=options.batch_size,
        num_workers=options.num_workers,
        collate_fn=partial(_collate, stack=not encoder.spec.variable_size),
        pin_memory=encoder.device.type == "cuda")
    from tqdm.auto import tqdm

    views = {kind: FeatureView.parse(kind) for kind in kinds}
    layers = tuple(sorted({i for v in views.values() if v for i in v.layers}))
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in (*kinds, "index")}
    bad: list[str] = []
    desc = f"encode {encoder.spec.name} {dataset.name}/{dataset.split} [{rows.start}:{rows.stop}]"
    for pixels, index, errors in tqdm(loader, desc=desc, disable=not options.progress,
                                      leave=False):
        if errors and not options.skip_bad_images:
            raise errors[0]
        bad += [e.path for e in errors]
        if pixels is None:
            continue
        feats = encoder.encode_image(pixels, layers=layers, tokens="tokens" in kinds)
        for kind, view in views.items():
            value = feats.get(kind) if view is None else view.select(feats, encoder.spec.name)
            chunks[kind].append(value.numpy())
        chunks["index"].append(index)
    arrays = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in chunks.items()}
    arrays["index"] = arrays["index"].astype(np.int64)
    return _Part(arrays, bad)


class _Decoded(torch.utils.data.Dataset):
    """Decode + transform in loader workers. A bad image travels back as a value, not a raise:
    a raise would end the whole batch, and skipping must keep its good images."""

    def __init__(self, dataset: ImageDataset, transform, rows: range):
        self.dataset, self.transform, self.rows = dataset, transform, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        index = self.rows[i]
        try:
            return self.transform(self.dataset.image(index)), index, None
        except BadImageError as exc:
            return None, index, exc


def _collate(items, stack: bool = True):
    """A batch: stacked pixels (a list for variable-size encoders), indices, decode errors."""
    good = [(x, i) for x, i, err in items if err is None]
    errors = [err for _, _, err in items if err is not None]
    if not good:
        return None, np.zeros(0, np.int64), errors
    pixels = [x for x, _ in good]
    return torch.stack(pixels) if stack else pixels, np.array([i for _, i in good]), errors


def _write_shard(path: Path, part: _Part) -> None:
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v) for k, v in part.arrays.items()}
    metadata = {"bad": json.dumps(part.bad)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _read_shards(entry: Path) -> list[_Part]:
    from safetensors import safe_open

    parts = []
    for path in sorted(entry.glob("shard-*.safetensors")):
        with safe_open(str(path), framework="numpy") as f:
            arrays = {k: f.get_tensor(k) for k in f.keys()}
            parts.append(_Part(arrays, json.loads((f.metadata() or {}).get("bad", "[]"))))
    return parts


def _assemble(parts: list[_Part], kinds, options: ExtractOptions, key: str, hit: bool,
              seconds: float) -> FeatureSet:
    bad = [b for p in parts for b in p.bad]
    if bad and not options.skip_bad_images:  # cached by a run that skipped them
        raise BadImageError(bad[0], "undecodable (skipped when these features were cached)")
    parts = [p for p in parts if len(p.arrays["index"])]  # shards whose images were all bad
    if not parts:
        raise VitbenchError("no image of this dataset split could be decoded")
    arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in (*kinds, "index")}
    views = {k: arrays.pop(k) for k in kinds if k not in FEATURE_KINDS}
    return FeatureSet(**arrays, views=views, n_bad=len(bad), cache_hit=hit, seconds=seconds,
                      key=key)


def encode_images(encoder: Encoder, images, batch_size: int = 64) -> ImageFeatures:
    """Encode PIL images (or an ImageDataset) in batches, without the cache.

    Variable-size encoders get each batch as a list of images; their tokens come back padded
    to the longest image of all batches, with `token_mask`.
    """
    variable = encoder.spec.variable_size
    if isinstance(images, ImageDataset) and variable:  # tokens too: not through the cache path
        dataset = images
        images = (dataset.image(i) for i in range(len(dataset)))
    if isinstance(images, ImageDataset):
        feats = extract_features(encoder, images, ("pooled", "tokens", "projected")
                                 if encoder.spec.has_text else ("pooled", "tokens"),
                                 ExtractOptions(batch_size=batch_size, use_cache=False,
                                                progress=False))
        return ImageFeatures(*(None if a is None else torch.from_numpy(a)
                               for a in (feats.pooled, feats.tokens, feats.projected)))
    outputs, batch = [], []
    for image in images:
        batch.append(encoder.transform(image))
        if len(batch) == batch_size:
            outputs.append(encoder.encode_image(batch if variable else torch.stack(batch)))
            batch = []
    if batch:
        outputs.append(encoder.encode_image(batch if variable else torch.stack(batch)))
    if not outputs:
        raise VitbenchError("encode() got no images")
    return _concat(outputs)


def _concat(outputs: list[ImageFeatures]) -> ImageFeatures:
    """Batches' features as one; tokens of different counts padded to the longest, masked."""
    pooled, tokens, projected = (None if getattr(outputs[0], k) is None
                                 else [getattr(o, k) for o in outputs] for k in FEATURE_KINDS)
    mask = None
    if tokens is not None and any(o.token_mask is not None for o in outputs):
        longest = max(t.shape[1] for t in tokens)
        masks = [torch.ones(t.shape[:2], dtype=torch.bool) if o.token_mask is None
                 else o.token_mask for t, o in zip(tokens, outputs, strict=True)]
        tokens = [torch.nn.functional.pad(t, (0, 0, 0, longest - t.shape[1])) for t in tokens]
        mask = torch.cat([torch.nn.functional.pad(m, (0, longest - m.shape[1])) for m in masks])
    return ImageFeatures(*(None if parts is None else torch.cat(parts)
                           for parts in (pooled, tokens, projected)), token_mask=mask)
