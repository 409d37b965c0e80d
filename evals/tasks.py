"""The task registry: a task = dataset + splits + protocol + frozen settings + main metric.

Settings live in the spec so results are reproducible; overrides are applied with
`dataclasses.replace` (unknown names rejected) and recorded in every result row.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitbench.contract import Encoder, dtype_name
from vitbench.errors import UnknownNameError, VitbenchError, check_options
from vitbench.evals.protocols import (
    SHOTS,
    PairedComparison,
    bootstrap_interval,
    few_shot_indices,
    paired_bootstrap,
    per_class_weights,
    retrieval_recall,
    topk_hits,
    zero_shot_scores,
)
from vitbench.evals.protocols.mllm import MllmScores, MllmSettings, TunedTokens, mllm_evaluate
from vitbench.evals.templates import DEFAULT_TEMPLATE_SET, dataset_template_set, template_set
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
class ZeroShotSettings:
    """CLIP zero-shot: every class name in every template, embeddings ensembled per class."""

    templates: tuple[str, ...] = ()  # "{}" format strings; empty: the named set below
    template_set: str = DEFAULT_TEMPLATE_SET  # evals/templates.py; ImageNet's 80 by default
    bootstrap: int = 1000  # resamples for the 95% intervals (0: none)


@dataclass(frozen=True)
class RetrievalSettings:
    """Image-text Recall@K over the eval split's images and all of their captions."""

    ks: tuple[int, ...] = (1, 5, 10)
    bootstrap: int = 1000


@dataclass(frozen=True)
class FewShotSettings:
    """k labelled examples per class from the train split, several seeds; mean and std."""

    shots: tuple[int, ...] = SHOTS
    seeds: int = 3
    method: str = "linear"  # or "knn" (k = min(20, examples))
    feature: str = "pooled"


@dataclass(frozen=True)
class MllmTaskSettings(MllmSettings):
    """The visual-tokenizer protocol's pipeline settings, and its controls."""

    blind_control: bool = True  # also train and score with the visual tokens zeroed
    bootstrap: int = 1000
    # tune a copy of the encoder with the pipeline in stage 2 (GVT's "joint" rows): tokens are
    # then computed from pixels at every step instead of read from the feature cache
    joint_tuning: bool = False


Settings = (KnnSettings | LinearSettings | ZeroShotSettings | RetrievalSettings
            | FewShotSettings | MllmTaskSettings)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    dataset: str
    train_split: str
    eval_split: str
    protocol: str  # key of PROTOCOLS
    settings: Settings
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
    """A percentage (as in the papers' tables), with its bootstrap 95% interval when the
    protocol scores examples one by one, or the std over seeds (few-shot)."""

    name: str
    value: float
    low: float | None = None
    high: float | None = None
    # the per-example values `value` averages (hits, ranks < k), for paired comparisons
    examples: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ProtocolResult:
    metrics: list[Metric]
    n_train: int
    n_eval: int
    chosen: dict = dataclasses.field(default_factory=dict)  # e.g. the C the sweep picked


class TaskInputs:
    """The encoder and the task's two splits; features are extracted (or read from the cache)
    on first use, and the time and cache hits are tallied for the result rows."""

    def __init__(self, task: TaskSpec, encoder: Encoder, data_dir, options: ExtractOptions):
        from vitbench.data import get_dataset

        self.task, self.encoder, self.options = task, encoder, options
        self.train_set = get_dataset(task.dataset, task.train_split, data_dir)
        # zero-shot and retrieval read one split: open it (and stat its files) once
        self.eval_set = self.train_set if task.eval_split == task.train_split else \
            get_dataset(task.dataset, task.eval_split, data_dir)
        self.encode_seconds, self.cache_hit, self.n_bad = 0.0, True, 0

    def dataset(self, split: str):
        return self.train_set if split == "train" else self.eval_set

    def features(self, split: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, dataset indices) of "train" or "eval" (undecodable images skipped)."""
        feats = extract_features(self.encoder, self.dataset(split), (kind,), self.options)
        self.encode_seconds += feats.seconds
        self.cache_hit &= feats.cache_hit
        self.n_bad += feats.n_bad
        return feats.get(kind), feats.index

    def labelled(self, split: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
        x, index = self.features(split, kind)
        y = self.dataset(split).labels[index]
        if (y < 0).any():
            raise VitbenchError(f"{self.task.name}: dataset {self.task.dataset!r} has no class "
                                "labels")
        return x, y


BOOTSTRAP = 1000  # resamples behind the kNN and linear-probe intervals


def _percent(metric: str, hits: np.ndarray, samples: int, seed: int = 0) -> Metric:
    """Mean of per-example hits as a percentage, with its bootstrap interval."""
    if samples < 1:
        return Metric(metric, 100.0 * float(hits.mean()), examples=hits)
    interval = bootstrap_interval(hits, samples=samples, seed=seed)
    return Metric(metric, 100 * interval.value, 100 * interval.low, 100 * interval.high, hits)


def _knn(settings: KnnSettings, inputs: TaskInputs) -> ProtocolResult:
    from vitbench.evals.protocols.knn import knn_predict_many

    train_x, train_y = inputs.labelled("train", settings.feature)
    test_x, test_y = inputs.labelled("eval", settings.feature)
    predictions = knn_predict_many(train_x, train_y, test_x, ks=settings.ks,
                                   temperature=settings.temperature)
    # k is capped at the train size; the metric name keeps the k that was asked for.
    return ProtocolResult([_percent(f"top1_k{k}", predictions[min(k, len(train_y))] == test_y,
                                    BOOTSTRAP) for k in settings.ks], len(train_y), len(test_y))


def _linear(settings: LinearSettings, inputs: TaskInputs) -> ProtocolResult:
    from vitbench.evals.protocols.linear import linear_probe

    train_x, train_y = inputs.labelled("train", settings.feature)
    test_x, test_y = inputs.labelled("eval", settings.feature)
    kwargs = {} if settings.c_grid is None else {"c_grid": settings.c_grid}
    result = linear_probe(train_x, train_y, test_x, test_y, val_fraction=settings.val_fraction,
                          seed=settings.seed, **kwargs)
    metrics = [_percent("top1", result.predictions == test_y, BOOTSTRAP)]
    if result.top5 is not None:
        metrics.append(Metric("top5", result.top5))
    return ProtocolResult(metrics, len(train_y), len(test_y), {"chosen_c": result.best_c})


def _joint_space(inputs: TaskInputs) -> None:
    if not inputs.encoder.spec.has_text:
        raise VitbenchError(f"{inputs.task.name} needs an image-text encoder; "
                            f"{inputs.encoder.spec.name} has no text tower")


def _zero_shot(settings: ZeroShotSettings, inputs: TaskInputs) -> ProtocolResult:
    _joint_space(inputs)
    images, labels = inputs.labelled("eval", "projected")
    classes = inputs.eval_set.classes
    templates = settings.templates or template_set(settings.template_set)
    prompts = [template.format(name) for name in classes for template in templates]
    text = inputs.encoder.encode_text(prompts).reshape(len(classes), len(templates), -1)
    scores = zero_shot_scores(images, text)
    top1 = topk_hits(scores, labels, 1)
    metrics = [_percent("top1", top1, settings.bootstrap),
               _percent("top5", topk_hits(scores, labels, 5), settings.bootstrap),
               _percent("mean_per_class_recall", top1 * per_class_weights(labels),
                        settings.bootstrap)]
    return ProtocolResult(metrics, 0, len(labels))


def _retrieval(settings: RetrievalSettings, inputs: TaskInputs) -> ProtocolResult:
    _joint_space(inputs)
    images, index = inputs.features("eval", "projected")
    captions = inputs.eval_set.captions
    if captions is None:
        raise VitbenchError(f"{inputs.task.name}: dataset {inputs.task.dataset!r} has no "
                            "captions")
    texts = [(row, caption) for row, i in enumerate(index) for caption in captions[i]]
    text_x = inputs.encoder.encode_text([caption for _, caption in texts])
    result = retrieval_recall(images, text_x, np.array([row for row, _ in texts]), settings.ks)
    metrics = [_percent(f"image_to_text_r{k}", (result.image_ranks < k).astype(float),
                        settings.bootstrap) for k in settings.ks]
    metrics += [_percent(f"text_to_image_r{k}", (result.text_ranks < k).astype(float),
                         settings.bootstrap) for k in settings.ks]
    return ProtocolResult(metrics, 0, len(images))


def _few_shot(settings: FewShotSettings, inputs: TaskInputs) -> ProtocolResult:
    from vitbench.evals.protocols._arrays import normalised_rows
    from vitbench.evals.protocols.knn import knn_classify
    from vitbench.evals.protocols.linear import fit_logistic

    if settings.method not in ("linear", "knn"):
        raise VitbenchError(f"few-shot method must be linear or knn, got {settings.method!r}")
    train_x, train_y = inputs.labelled("train", settings.feature)
    test_x, test_y = inputs.labelled("eval", settings.feature)
    train_x, test_x = normalised_rows(train_x, "train"), normalised_rows(test_x, "eval")
    classes = int(train_y.max()) + 1
    metrics = []
    for k in settings.shots:
        scores = []
        for seed in range(settings.seeds):
            rows = few_shot_indices(train_y, k, seed)
            if settings.method == "knn":
                predicted = knn_classify(train_x[rows], train_y[rows], test_x,
                                         k=min(20, len(rows)), num_classes=classes)
            else:  # too few examples for a validation split: C fixed at 1, unit-norm rows
                fit = fit_logistic(train_x[rows], train_y[rows], 1.0, num_classes=classes)
                predicted = (test_x @ fit.weight.numpy().T + fit.bias.numpy()).argmax(1)
            scores.append(100.0 * float(np.mean(predicted == test_y)))
        mean, std = float(np.mean(scores)), float(np.std(scores))
        metrics.append(Metric(f"top1_{k}shot", mean, mean - std, mean + std))
    return ProtocolResult(metrics, len(train_y), len(test_y))


def _mllm(settings: MllmTaskSettings, inputs: TaskInputs) -> ProtocolResult:
    """Frozen patch tokens -> projector -> causal LM (evals/protocols/mllm.py); the blind
    control trains and answers the same questions with every visual token zeroed, showing
    what the language model gets from the question priors alone."""
    # joint tuning changes the weights: a copy, so the suite's other tasks see the original
    tuned = copy.deepcopy(inputs.encoder) if settings.joint_tuning else None
    train_x, train_q = _visual_questions(inputs, "train", tuned)
    eval_x, eval_q = _visual_questions(inputs, "eval", tuned)
    device = inputs.encoder.device
    scores = mllm_evaluate(train_x, train_q, eval_x, eval_q, settings, device)
    metrics = _mllm_metrics("", scores, settings.bootstrap)
    if settings.blind_control:
        blind = _blind(settings, tuple(train_q), tuple(eval_q), len(train_x), len(eval_x),
                       str(device))
        metrics += _mllm_metrics("blind_", blind, settings.bootstrap)
    return ProtocolResult(metrics, len(train_x), len(eval_x))


@functools.lru_cache(maxsize=8)
def _blind(settings, train_q, eval_q, n_train: int, n_eval: int, device: str) -> MllmScores:
    """The blind control sees one zero token per image: no visual information and nothing
    that depends on the encoder, so one run serves every encoder of a suite."""
    return mllm_evaluate(np.zeros((n_train, 1, 1), np.float32), list(train_q),
                         np.zeros((n_eval, 1, 1), np.float32), list(eval_q), settings, device)


def _visual_questions(inputs: TaskInputs, split: str, tuned: Encoder | None = None
                      ) -> tuple[np.ndarray | TunedTokens, list]:
    """Patch tokens of a split and its questions, re-pointed at the token rows (images that
    could not be decoded are skipped with their questions). With a `tuned` encoder the
    tokens are computed by it from the same images, on demand."""
    tokens, index = inputs.features(split, "tokens")
    dataset = inputs.dataset(split)
    row_of = {int(image): row for row, image in enumerate(index)}
    questions = [dataclasses.replace(q, image=row_of[q.image])
                 for q in _questions(dataset) if q.image in row_of]
    if tuned is None:
        return tokens, questions
    import torch

    def pixels(rows: list[int]) -> torch.Tensor:
        return torch.stack([tuned.transform(dataset.image(int(index[r]))) for r in rows])

    return TunedTokens(tuned, pixels, torch.from_numpy(tokens)), questions


def _questions(dataset) -> list:
    """A dataset's own questions (VQAv2, GVT files), shapes' label-made ones, or captions."""
    from vitbench.data import ShapesDataset
    from vitbench.data.questions import CAPTION_PROMPT, Question, shapes_questions

    if isinstance(dataset, ShapesDataset):
        return shapes_questions(dataset)
    if hasattr(dataset, "questions"):
        return dataset.questions
    if dataset.captions is not None:
        return [Question(i, "caption", CAPTION_PROMPT, tuple(captions))
                for i, captions in enumerate(dataset.captions)]
    raise VitbenchError(f"dataset {dataset.name!r} has no questions or captions for the "
                        "visual-tokenizer protocol")


def _mllm_metrics(prefix: str, scores: MllmScores, samples: int) -> list[Metric]:
    """The scores of the question kinds the eval split has."""
    hits = scores.hits
    per_question = (("vqa_acc", hits.vqa), ("oc_acc", hits.oc), ("mci_acc", hits.mci),
                    ("caption_cider", hits.cider / 100))  # CIDEr x100 per image, as hits
    metrics = [_percent(name, values, samples) for name, values in per_question if len(values)]
    if len(hits.oc):
        metrics += [Metric("oc_mae", scores.oc_mae), Metric("oc_rmse", scores.oc_rmse)]
    if len(hits.cider):
        metrics.append(Metric("caption_bleu4", scores.caption_bleu4))
    return [dataclasses.replace(m, name=prefix + m.name) for m in metrics]


PROTOCOLS: dict[str, Callable[..., ProtocolResult]] = {
    "knn": _knn, "linear": _linear, "zeroshot": _zero_shot, "retrieval": _retrieval,
    "fewshot": _few_shot, "mllm": _mllm}

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

# Prompts that name the class the way the embedded captions do ("the number 3", "a large red
# circle next to ..."), so a model trained on those captions can be scored zero-shot.
_EMBEDDED_TEMPLATES = {"digits": ("the number {}",), "shapes": ("a large {}",)}


def _image_text_tasks(dataset: str, eval_split: str, templates: tuple[str, ...], *,
                      resolution=None, embedded=False, what: str) -> None:
    register_task(TaskSpec(f"{dataset}_zeroshot", dataset, eval_split, eval_split, "zeroshot",
                           ZeroShotSettings(templates), "top1", resolution, embedded,
                           f"{what}: zero-shot with {len(templates)} prompt template(s)"))
    register_task(TaskSpec(f"{dataset}_retrieval", dataset, eval_split, eval_split,
                           "retrieval", RetrievalSettings(), "image_to_text_r1", resolution,
                           embedded, f"{what}: image-text Recall@1/5/10, all captions"))


def _few_shot_task(dataset: str, train: str, eval_split: str, *, resolution=None,
                   embedded=False, what: str) -> None:
    register_task(TaskSpec(f"{dataset}_fewshot", dataset, train, eval_split, "fewshot",
                           FewShotSettings(), "top1_16shot", resolution, embedded,
                           f"{what}: {'/'.join(map(str, SHOTS))}-shot linear, 3 seeds"))


for _name in ("digits", "shapes"):
    _image_text_tasks(_name, "test", _EMBEDDED_TEMPLATES[_name], resolution=32 if
                      _name == "digits" else 64, embedded=True,
                      what=f"embedded {_name} with its captions")
    _few_shot_task(_name, "train", "test", resolution=32 if _name == "digits" else 64,
                   embedded=True, what=f"embedded {_name}")
for _name, _split in (("imagenet", "val"), ("cifar10", "test"), ("cifar100", "test")):
    _set = dataset_template_set(_name)
    register_task(TaskSpec(f"{_name}_zeroshot", _name, _split, _split, "zeroshot",
                           ZeroShotSettings(template_set=_set), "top1",
                           description=f"{_name} (--data-dir): zero-shot, CLIP's {_set} "
                                       "prompt templates"))
    _few_shot_task(_name, "train", _split, what=f"{_name} (--data-dir)")
for _name, _what in (("coco", "COCO 5k Karpathy test"),
                     ("flickr30k", "Flickr30k 1k Karpathy test")):
    register_task(TaskSpec(f"{_name}_retrieval", _name, "test", "test", "retrieval",
                           RetrievalSettings(), "image_to_text_r1",
                           description=f"{_what} (--data-dir): image-text Recall@1/5/10"))

register_task(TaskSpec("shapes_mllm", "shapes", "train", "test", "mllm", MllmTaskSettings(),
                       "vqa_acc", 64, True, "embedded shapes: encoder as the visual tokenizer of "
                       "a tiny causal LM (captions, VQA, counting OC, identification MCI), with "
                       "a blind control"))
for _name, _metric, _what in (("vqav2", "vqa_acc", "VQAv2 val: VQA soft accuracy"),
                              ("gvt", "oc_acc", "GVT-style OC / MCI questions")):
    # no captions to pretrain the projector on: stage 2 (the questions) only
    register_task(TaskSpec(f"{_name}_mllm", _name, "train", "val", "mllm",
                           MllmTaskSettings(stage1_steps=0), _metric,
                           description=f"{_what} (--data-dir) through the visual-tokenizer "
                                       "pipeline"))
register_task(TaskSpec("coco_mllm", "coco", "train", "test", "mllm", MllmTaskSettings(),
                       "caption_cider", description="COCO Karpathy (--data-dir): captioning "
                       "CIDEr / BLEU-4 through the visual-tokenizer pipeline"))

DEFAULT_SUITE = ("digits_knn", "digits_linear", "shapes_knn", "shapes_linear",
                 "digits_zeroshot", "digits_retrieval", "shapes_zeroshot", "shapes_retrieval",
                 "shapes_mllm")
# protocols that need a joint image-text space (`encoder.spec.has_text`)
JOINT_SPACE_PROTOCOLS = ("zeroshot", "retrieval")


@dataclass(frozen=True)
class TaskOutcome:
    """A protocol's result with what the result rows record about how it was obtained."""

    task: TaskSpec
    result: ProtocolResult
    encode_seconds: float
    protocol_seconds: float
    cache_hit: bool
    n_bad_images: int

    def metric(self, name: str) -> Metric:
        found = [m for m in self.result.metrics if m.name == name]
        if not found:
            raise VitbenchError(f"task {self.task.name} has no metric {name!r}; it has "
                                f"{', '.join(m.name for m in self.result.metrics)}")
        return found[0]


def evaluate_task(task: TaskSpec, encoder: Encoder, *, data_dir: str | Path | None = None,
                  options: ExtractOptions = ExtractOptions(), overrides: dict | None = None
                  ) -> TaskOutcome:
    """Extract (or read cached) features and run the task's protocol on them."""
    task = task.with_overrides(overrides or {})
    inputs = TaskInputs(task, encoder, data_dir, options)
    start = time.perf_counter()
    result = PROTOCOLS[task.protocol](task.settings, inputs)
    protocol_seconds = time.perf_counter() - start - inputs.encode_seconds
    return TaskOutcome(task, result, inputs.encode_seconds, max(protocol_seconds, 0.0),
                       inputs.cache_hit, inputs.n_bad)


def run_task(task: TaskSpec, encoder: Encoder, *, data_dir: str | Path | None = None,
             options: ExtractOptions = ExtractOptions(), overrides: dict | None = None
             ) -> list[ResultRow]:
    """Evaluate one encoder on one task: one result row per metric."""
    outcome = evaluate_task(task, encoder, data_dir=data_dir, options=options,
                            overrides=overrides)
    task, result = outcome.task, outcome.result
    settings = {**dataclasses.asdict(task.settings), **result.chosen,
                "overrides": overrides or {}}
    return [ResultRow(
        model=encoder.spec.name, task=task.name, dataset=task.dataset, split=task.eval_split,
        protocol=task.protocol, metric=m.name, value=m.value, n_train=result.n_train,
        n_eval=result.n_eval, settings=settings_json(settings),
        seed=getattr(task.settings, "seed", 0), weights=str(encoder.loaded),
        weights_id=encoder.loaded.identity, resolution=encoder.resolution,
        device=str(encoder.device), dtype=dtype_name(encoder.dtype),
        encode_seconds=round(outcome.encode_seconds, 3),
        protocol_seconds=round(outcome.protocol_seconds, 3), cache_hit=outcome.cache_hit,
        n_bad_images=outcome.n_bad_images, low=m.low, high=m.high,
    ) for m in result.metrics]


@dataclass(frozen=True)
class TaskComparison:
    """Encoder B against encoder A on one metric of one task, on the same examples."""

    task: str
    metric: str
    a: float
    b: float
    n: int
    paired: PairedComparison  # B - A in the metric's per-example units (0-1 for hits)


def compare_on_task(task: TaskSpec, encoder_a: Encoder, encoder_b: Encoder, *,
                    metric: str | None = None, data_dir: str | Path | None = None,
                    options: ExtractOptions = ExtractOptions(), overrides: dict | None = None,
                    samples: int = BOOTSTRAP, seed: int = 0) -> TaskComparison:
    """Paired bootstrap of B - A: both encoders are scored on the same eval examples, which
    are resampled together, so the test sees how much of a difference is example noise."""
    metric = metric or task.main_metric
    picked = []
    for encoder in (encoder_a, encoder_b):
        found = evaluate_task(task, encoder, data_dir=data_dir, options=options,
                              overrides=overrides).metric(metric)
        if found.examples is None:
            raise VitbenchError(f"{task.name}/{metric} is not a mean over examples (few-shot "
                                "scores are means over seeds): no paired test")
        picked.append(found)
    a, b = picked
    return TaskComparison(task.name, metric, a.value, b.value, len(a.examples),
                          paired_bootstrap(a.examples, b.examples, samples=samples, seed=seed))
