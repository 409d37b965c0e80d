"""Evaluate models x tasks: the one code path behind `vitbench eval` and `vitbench.evaluate`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vitbench.contract import Encoder
from vitbench.data import list_datasets
from vitbench.errors import VitbenchError
from vitbench.evals.tasks import JOINT_SPACE_PROTOCOLS, TaskSpec, get_task, run_task
from vitbench.features import ExtractOptions
from vitbench.results import ResultRow, append_rows
from vitbench.zoo.registry import build, get_entry
from vitbench.zoo.weights import WeightsRequest, parse_pretrained, request_from_cli


@dataclass
class EvalPlan:
    """What to run and how; validated up front so a typo fails before any encoding."""

    models: Sequence[str | Encoder]
    tasks: Sequence[str]
    weights: str | bool | None = None  # CLI form: None (default tag) | "random" | PATH | TAG
    data_dir: str | None = None
    resolution: int | None = None  # overrides every task's resolution
    device: str = "cpu"
    dtype: str = "fp32"
    options: ExtractOptions = field(default_factory=ExtractOptions)
    overrides: dict = field(default_factory=dict)
    out: str | Path | None = None  # CSV the rows are appended to, task by task
    # image-only encoders skip zero-shot/retrieval tasks instead of failing (the default suite)
    skip_text_tasks: bool = False


def run_eval(plan: EvalPlan, on_rows: Callable[[list[ResultRow]], None] | None = None
             ) -> list[ResultRow]:
    tasks = [get_task(t) for t in plan.tasks]
    for task in tasks:
        if not task.embedded and plan.data_dir is None:
            layout = {d.name: d.layout for d in list_datasets()}[task.dataset]
            raise VitbenchError(f"task {task.name} needs data: pass --data-dir DIR ({layout})")
    requests = [_request(m, plan.weights) for m in plan.models]  # unknown names fail here
    rows: list[ResultRow] = []
    for model, request in zip(plan.models, requests, strict=True):
        encoders: dict[int | None, Encoder] = {}  # one build per resolution
        for task in tasks:
            encoder = _encoder(model, request, _resolution(task, plan), plan, encoders)
            if (plan.skip_text_tasks and task.protocol in JOINT_SPACE_PROTOCOLS
                    and not encoder.spec.has_text):
                continue
            new = run_task(task, encoder, data_dir=plan.data_dir, options=plan.options,
                           overrides=plan.overrides)
            if plan.out is not None:
                append_rows(plan.out, new)  # finished tasks survive a later failure
            if on_rows is not None:
                on_rows(new)
            rows += new
    return rows


def encoder_for(model: str | Encoder, task: TaskSpec, plan: EvalPlan) -> Encoder:
    """The encoder `run_eval` evaluates `model` with on `task` (weights, resolution, device)."""
    return _encoder(model, _request(model, plan.weights), _resolution(task, plan), plan, {})


def _request(model: str | Encoder, weights) -> WeightsRequest | None:
    if isinstance(model, Encoder):
        return None
    spec = get_entry(model).spec
    if isinstance(weights, bool):
        return parse_pretrained(weights, spec)
    return request_from_cli(weights, spec)


def _resolution(task: TaskSpec, plan: EvalPlan) -> int | None:
    return plan.resolution or task.resolution


def _encoder(model, request, resolution, plan: EvalPlan, built: dict) -> Encoder:
    if isinstance(model, Encoder):  # the caller's own instance runs as it is
        return model
    if resolution not in built:
        built[resolution] = build(get_entry(model), request, resolution).to(plan.device, plan.dtype)
    return built[resolution]
