"""Named tiny pretraining runs the embedded default suite evaluates next to random weights.

`vitbench eval` with no arguments shows encoders that vitbench itself pretrained on the embedded
data, beside the same architecture with random weights. Each recipe is trained once, on first
use, into the cache (`<cache>/runs/<name>-<key>`, the key hashing the recipe and the vitbench
version) and read from there afterwards; a lock makes concurrent first uses train it once, and
the run is moved into place only when finished, so a killed run never leaves a half-trained
encoder that later evaluations would read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from vitbench.errors import UnknownNameError


@dataclass(frozen=True)
class Recipe:
    """A tiny run: the trainer's settings that make `objective` learn on `data` in ~1 minute
    on two CPU cores (tests/test_learns_*.py measure the same settings)."""

    name: str
    objective: str
    model: str = "vit_pico"
    data: str = "digits"
    steps: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 20
    resolution: int = 32

    def key(self) -> str:
        from vitbench import __version__

        blob = json.dumps({**asdict(self), "vitbench": __version__}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


RECIPES = {r.name: r for r in (
    Recipe("pico-clip-digits", "clip", steps=300),
    Recipe("pico-supervised-digits", "supervised", steps=300, batch_size=64),
)}
DEFAULT_RUNS = ("pico-clip-digits",)  # what `vitbench eval` with no arguments adds


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownNameError("recipe", name, RECIPES) from None


def ensure_run(name: str, cache_dir: str | os.PathLike | None = None,
               progress: bool = False) -> Path:
    """The run directory of recipe `name`, trained now if the cache does not hold it yet."""
    from vitbench.features import cache_root
    from vitbench.pretrain.trainer import TrainConfig, train

    recipe = get_recipe(name)
    root = cache_root(cache_dir) / "runs"
    final = root / f"{recipe.name}-{recipe.key()}"
    if (final / "run.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{final.name}.lock")):
        if (final / "run.json").is_file():  # another process trained it while we waited
            return final
        partial = root / f"{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # a killed earlier attempt
        train(TrainConfig(recipe.objective, recipe.model, data=recipe.data, out=str(partial),
                          steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
                          warmup_steps=recipe.warmup_steps, resolution=recipe.resolution,
                          progress=progress))
        os.replace(partial, final)
    return final
