"""Where an encoder's weights come from: random init, a local file or directory, or a hub cache.

Every pretrained load goes through a local file in the end (the hub path only finds or fetches
that file), so the path tested offline with weights saved to disk is the path users run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from vitbench.contract import EncoderSpec, LoadedWeights, WeightsSource
from vitbench.errors import VitbenchError

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")
RANDOM_SEED = 0  # random-init weights are seeded, so their features are reproducible


@dataclass(frozen=True)
class WeightsRequest:
    """What the caller asked for: `random`, a local `file` (or dir), or the `hub` tag."""

    kind: str
    tag: str = ""
    path: Path | None = None


def parse_pretrained(pretrained: bool | str | os.PathLike, spec: EncoderSpec,
                     tag: str | None = None) -> WeightsRequest:
    """Turn `load(..., pretrained=True | False | path, tag=...)` into a request."""
    if pretrained is False or pretrained == "random":
        return WeightsRequest("random", tag="random")
    if pretrained is True or pretrained in ("pretrained", "default"):
        chosen = tag or spec.weights.tag
        if not chosen:
            raise VitbenchError(f"{spec.name} has no published weights; use pretrained=False "
                                "(--weights random) or pass a weights file")
        return WeightsRequest("hub", tag=chosen)
    path = Path(pretrained).expanduser()
    if not path.exists():
        raise VitbenchError(f"weights file or directory {str(path)!r} does not exist")
    return WeightsRequest("file", tag=path.name, path=path)


def request_from_cli(value: str | None, spec: EncoderSpec) -> WeightsRequest:
    """`--weights random|PATH|TAG` (None = the entry's default published weights)."""
    if value is None:
        return parse_pretrained(True, spec)
    if value == "random" or Path(value).expanduser().exists():
        return parse_pretrained(value, spec)
    if os.sep in value or value.endswith(CHECKPOINT_SUFFIXES):
        raise VitbenchError(f"weights file or directory {value!r} does not exist")
    return parse_pretrained(True, spec, tag=value)


@contextlib.contextmanager
def seeded(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Seed torch for a random init without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def random_weights() -> LoadedWeights:
    return LoadedWeights("random", "random", f"seed{RANDOM_SEED}")


def file_weights(path: Path) -> LoadedWeights:
    return LoadedWeights("file", path.name, content_hash(path))


def content_hash(path: Path) -> str:
    """sha256 of a file, or of every file under a directory (names + contents).

    Hashing contents, not names, is what keeps a replaced weights file from being served
    features cached for the old one. Results are memoised per (path, size, mtime).
    """
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(_file_hash(str(file), stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


_HASHES: dict[tuple[str, int, int], str] = {}


def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    key = (path, size, mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def find_checkpoint(path: Path, preferred: tuple[str, ...]) -> Path:
    """A checkpoint file: `path` itself, or the preferred file inside a directory."""
    if path.is_file():
        return path
    for name in preferred:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) != 1:
        raise VitbenchError(f"cannot tell which checkpoint to load in {path} "
                            f"(expected one of {', '.join(preferred)})")
    return found[0]


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely: safetensors, or torch.load(weights_only=True); unwrap nesting."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            # official releases (Vim, DeiT...) also store their argparse.Namespace of training
            # arguments: plain attributes, safe to allow
            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle payloads beyond tensors are refused, by design
            raise VitbenchError(f"cannot load {path} safely with weights_only=True "
                                f"({type(exc).__name__}); convert it to safetensors") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def hub_file(spec: EncoderSpec, source: WeightsSource) -> Path:
    """The local path of published weights: the hub cache first, then a download.

    Offline (HF_HUB_OFFLINE=1, or no network) with nothing cached, the error names the
    weights, their size, and the two ways to supply them.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    if not source.hf_hub_id:
        raise _unavailable(spec, source, "they are not on the Hugging Face hub")
    for filename in source.filenames:
        cached = try_to_load_from_cache(source.hf_hub_id, filename)
        if isinstance(cached, str):
            return Path(cached)
    if constants.HF_HUB_OFFLINE:
        raise _unavailable(spec, source, "offline (HF_HUB_OFFLINE=1) and not in the hub cache")
    errors = []
    for filename in source.filenames:
        try:
            return Path(hf_hub_download(source.hf_hub_id, filename, etag_timeout=10))
        except Exception as exc:  # network errors come in many types; all mean "not here"
            errors.append(type(exc).__name__)
    raise _unavailable(spec, source, f"download failed ({', '.join(sorted(set(errors)))})")


def _unavailable(spec: EncoderSpec, source: WeightsSource, why: str) -> VitbenchError:
    files = "/".join(source.filenames)
    if source.hf_hub_id:
        where = f"hf.co/{source.hf_hub_id} ({files})"
        fetch = f"put them in the hub cache (huggingface-cli download {source.hf_hub_id}) or "
    else:  # released outside the hub: the spec's notes say where
        where, fetch = f"({files}; {spec.notes or spec.paper})", "download them, then "
    return VitbenchError(
        f"weights {spec.name}.{source.tag} {where} ~{source.size_mb:.0f} MB unavailable: {why}; "
        f"{fetch}pass a local file/dir with --weights PATH / pretrained=PATH, or use "
        "--weights random"
    )


def resolve(spec: EncoderSpec, request: WeightsRequest,
            source_for_tag: Callable[[str], WeightsSource]) -> tuple[Path | None, LoadedWeights]:
    """The local weights path for a request (None for random init) and what it identifies."""
    if request.kind == "random":
        return None, random_weights()
    if request.kind == "file":
        return request.path, file_weights(request.path)
    source = spec.weights if request.tag == spec.weights.tag else source_for_tag(request.tag)
    if source.local:
        return Path(source.local), file_weights(Path(source.local))
    path = hub_file(spec, source)
    # hub cache paths are .../snapshots/<commit>/<file>: the commit pins the content cheaply
    return path, LoadedWeights("hub", request.tag, f"{source.hf_hub_id}@{path.parent.name}")
