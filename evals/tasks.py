"""The task registry: a task = dataset + splits + protocol + frozen settings + main metric.

Settings live in the spec so results are reproducible; overrides are applied with
`dataclasses.replace` (unknown names rejected) and recorded in every result row.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitbench.contract import Encoder, dtype_name
from vitbench.errors import UnknownNameError, VitbenchError, check_options
from vitbench.features import ExtractOptions, extract_features
from vitbench.results import ResultRow, settings_json


@dataclass(frozen=True)
class KnnSettings:
    """DINO kNN protocol: cosine top-k, votes weighted by exp(sim / T)."""

    ks: tuple[int, ...] = (10, 20, 100, 200)
    temperature: float = 0.07
    feature: str = "pooled"


@dataclass(frozen=True)
class LinearSettings:
    """Logistic-regression probe; C swept on a validation split carved from train."""

    val_fraction: float = 0.2
    c_grid: tuple[float, ...] | None = None  # None = the protocol's default grid
    seed: int = 0
    feature: str = "pooled"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    dataset: str
    train_split: str
    eval_split: str
    protocol: str  # key of PROTOCOLS
    settings: KnnSettings | LinearSettings
    main_metric: str
    resolution: int | None = None  # None: the encoder's native input size
    embedded: bool = False  # runs offline on data vitbench generates itself
    description: str = ""

    def with_overrides(self, overrides: dict) -> TaskSpec:
        names = [f.name for f in dataclasses.fields(self.settings)]
        check_options(overrides, names, f"{self.protocol} setting")
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **overrides))


@dataclass(frozen=True)
class Metric:
    name: str
    value: float


@dataclass(frozen=True)
class ProtocolResult:
    metrics: list[Metric]
    chosen: dict = dataclasses.field(default_factory=dict)  # e.g. the C the sweep picked


def _knn(settings: KnnSettings, train_x, train_y, test_x, test_y) -> ProtocolResult:
    from vitbench.evals.protocols.knn import knn_predict_many

    predictions = knn_predict_many(train_x, train_y, test_x, ks=settings.ks,
                                   temperature=settings.temperature)
    # k is capped at the train size; the metric name keeps the k that was asked for.
    # Accuracies are percentages, as in the papers' tables.
    return ProtocolResult([Metric(f"top1_k{k}", 100.0 * float(np.mean(
        predictions[min(k, len(train_y))] == test_y))) for k in settings.ks])


def _linear(settings: LinearSettings, train_x, train_y, test_x, test_y) -> ProtocolResult:
    from vitbench.evals.protocols.linear import linear_probe

    kwargs = {} if settings.c_grid is None else {"c_grid": settings.c_grid}
    result = linear_probe(train_x, train_y, test_x, test_y, val_fraction=settings.val_fraction,
                          seed=settings.seed, **kwargs)
    metrics = [Metric("top1", result.top1)]
    if result.top5 is not None:
        metrics.append(Metric("top5", result.top5))
    return ProtocolResult(metrics, {"chosen_c": result.best_c})


PROTOCOLS: dict[str, Callable[..., ProtocolResult]] = {"knn": _knn, "linear": _linear}

_TASKS: dict[str, TaskSpec] = {}


def register_task(task: TaskSpec) -> TaskSpec:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    if task.protocol not in PROTOCOLS:
        raise ValueError(f"{task.name}: unknown protocol {task.protocol!r}")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> TaskSpec:
    if name not in _TASKS:
        raise UnknownNameError("task", name, _TASKS)
    return _TASKS[name]


def list_tasks() -> list[TaskSpec]:
    return list(_TASKS.values())


def _classification_tasks(dataset: str, train: str, eval_split: str, *, resolution=None,
                          embedded=False, what: str) -> None:
    register_task(TaskSpec(f"{dataset}_knn", dataset, train, eval_split, "knn", KnnSettings(),
                           "top1_k20", resolution, embedded, f"{what}: weighted kNN (DINO)"))
    register_task(TaskSpec(f"{dataset}_linear", dataset, train, eval_split, "linear",
                           LinearSettings(), "top1", resolution, embedded,
                           f"{what}: linear probe (logistic regression)"))


# Embedded tasks run at small resolutions: a ViT-S/16 encodes ~9 images/s at 224 px on a
# 2-core CPU, but hundreds per second at 32-64 px.
_classification_tasks("digits", "train", "test", resolution=32, embedded=True,
                      what="scikit-learn 8x8 digits, 10 classes")
_classification_tasks("shapes", "train", "test", resolution=64, embedded=True,
                      what="procedural shapes, class = kind of the large shape")
_classification_tasks("imagenet", "train", "val", what="ImageNet-1k (--data-dir)")
_classification_tasks("cifar10", "train", "test", what="CIFAR-10 (--data-dir)")
_classification_tasks("cifar100", "train", "test", what="CIFAR-100 (--data-dir)")

DEFAULT_SUITE = ("digits_knn", "digits_linear", "shapes_knn", "shapes_linear")


def run_task(task: TaskSpec, encoder: Encoder, *, data_dir: str | Path | None = None,
             options: ExtractOptions = ExtractOptions(), overrides: dict | None = None
             ) -> list[ResultRow]:
    """Evaluate one encoder on one task: extract (or read cached) features, run the protocol."""
    from vitbench.data import get_dataset

    task = task.with_overrides(overrides or {})
    train_set = get_dataset(task.dataset, task.train_split, data_dir)
    eval_set = get_dataset(task.dataset, task.eval_split, data_dir)
    feature = task.settings.feature
    train = extract_features(encoder, train_set, (feature,), options)
    test = extract_features(encoder, eval_set, (feature,), options)
    train_y, test_y = train_set.labels[train.index], eval_set.labels[test.index]
    if (train_y < 0).any() or (test_y < 0).any():
        raise VitbenchError(f"{task.name}: dataset {task.dataset!r} has no class labels")
    start = time.perf_counter()
    result = PROTOCOLS[task.protocol](task.settings, train.get(feature), train_y,
                                       test.get(feature), test_y)
    protocol_seconds = time.perf_counter() - start
    settings = {**dataclasses.asdict(task.settings), **result.chosen,
                "overrides": overrides or {}}
    return [ResultRow(
        model=encoder.spec.name, task=task.name, dataset=task.dataset, split=task.eval_split,
        protocol=task.protocol, metric=m.name, value=m.value, n_train=len(train_y),
        n_eval=len(test_y), settings=settings_json(settings),
        seed=getattr(task.settings, "seed", 0), weights=str(encoder.loaded),
        weights_id=encoder.loaded.identity, resolution=encoder.resolution,
        device=str(encoder.device), dtype=dtype_name(encoder.dtype),
        encode_seconds=round(train.seconds + test.seconds, 3),
        protocol_seconds=round(protocol_seconds, 3), cache_hit=train.cache_hit and test.cache_hit,
        n_bad_images=train.n_bad + test.n_bad,
    ) for m in result.metrics]
