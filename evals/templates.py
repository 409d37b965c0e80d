"""Zero-shot prompt templates, one set per dataset.

The sets are CLIP_benchmark's English ones: CLIP's per-dataset prompts (Radford et al. 2021,
its `data/prompts.md`), e.g. 80 for ImageNet, 18 for CIFAR-10/100, 34 for Caltech-101.
Read from the installed package's JSON rather than copied, so they stay the ones every
CLIP_benchmark result was produced with. Templates are "{}" format strings here.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from vitbench.errors import UnknownNameError

# vitbench dataset -> its CLIP_benchmark set (a dataset without one uses ImageNet's)
DATASET_TEMPLATE_SETS = {"imagenet": "imagenet1k", "cifar10": "cifar10", "cifar100": "cifar100"}
DEFAULT_TEMPLATE_SET = "imagenet1k"


@functools.cache
def template_sets() -> dict[str, tuple[str, ...]]:
    """Every named set, name -> templates."""
    text = (resources.files("clip_benchmark.datasets")
            / "en_zeroshot_classification_templates.json").read_text(encoding="utf-8")
    return {name: tuple(t.replace("{c}", "{}") for t in templates)
            for name, templates in json.loads(text).items() if name != "dummy"}


def template_set(name: str) -> tuple[str, ...]:
    """The templates of one named set (see `template_sets`)."""
    sets = template_sets()
    if name not in sets:
        raise UnknownNameError("template set", name, sets)
    return sets[name]


def dataset_template_set(dataset: str) -> str:
    """The set a dataset's zero-shot task uses by default."""
    return DATASET_TEMPLATE_SETS.get(dataset, DEFAULT_TEMPLATE_SET)
