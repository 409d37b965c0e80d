"""The `vitbench` command line: list, tasks, info, eval, leaderboard, compare, pretrain,
capfilt.

User mistakes (unknown names, missing data or weights, bad images) print one line on stderr
and exit non-zero (2 for unknown names); only bugs show a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import typer

from vitbench.errors import VitbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Vision encoders: zoo, pretraining and evaluation behind one API.")

DEFAULT_MODELS = ("pixels", "test_vit", "vit_s16", "vit_pico")  # random weights
MEASURED = Path("leaderboards/measured")


def _handled(command):
    """Turn VitbenchError into one line on stderr and its exit code."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VitbenchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
    return wrapper


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _table(records: list[dict], fmt: str) -> str:
    import pandas as pd

    from vitbench.results import render

    return render(pd.DataFrame(records), fmt)


@app.command("list")
@_handled
def list_cmd(
    family: str | None = typer.Option(None, help="Only this family (vit, clip, eva02, ...)."),
    supervision: str | None = typer.Option(None, help="fully | weakly | self | none."),
    backend: str | None = typer.Option(None, help="timm | open_clip | transformers | pixels."),
    fmt: str = typer.Option("table", "--format", help="table | csv | md."),
    long: bool = typer.Option(False, "--long", help="Also backend id, data, paper, license."),
):
    """List the encoders of the zoo."""
    from vitbench.zoo.registry import list_models

    specs = list_models(family, supervision, backend)
    if not specs:
        raise VitbenchError("no encoder matches these filters")
    typer.echo(_table([s.summary(long) for s in specs], fmt))


@app.command("tasks")
@_handled
def tasks_cmd(fmt: str = typer.Option("table", "--format", help="table | csv | md."),
              templates: bool = typer.Option(False, "--templates",
                                             help="List the zero-shot template sets instead.")):
    """List the evaluation tasks."""
    from vitbench.evals.tasks import list_tasks
    from vitbench.evals.templates import template_sets

    if templates:
        typer.echo(_table([{"set": name, "templates": len(ts), "first": ts[0]}
                           for name, ts in template_sets().items()], fmt))
        return
    records = [{"name": t.name, "dataset": t.dataset, "protocol": t.protocol,
                "splits": f"{t.train_split}->{t.eval_split}", "metric": t.main_metric,
                "resolution": t.resolution or "native",
                "data": "embedded" if t.embedded else "--data-dir"} for t in list_tasks()]
    typer.echo(_table(records, fmt))


@app.command("info")
@_handled
def info_cmd(name: str):
    """Show an encoder's full spec and where its weights come from."""
    from vitbench.zoo.registry import get_spec

    spec = get_spec(name)
    for key, value in spec.to_record().items():
        typer.echo(f"{key:>18}: {value}")
    if spec.weights.hf_hub_id:
        typer.echo(f"{'offline':>18}: huggingface-cli download {spec.weights.hf_hub_id} "
                   "(then HF_HUB_OFFLINE=1 works), or --weights PATH")
    elif spec.weights.filenames:  # released outside the hub: the notes say where
        typer.echo(f"{'offline':>18}: download {' or '.join(spec.weights.filenames)} (see "
                   "notes), then --weights PATH")


@app.command("eval")
@_handled
def eval_cmd(
    model: str | None = typer.Option(None, help="Comma-separated zoo names, timm:/open_clip:/"
                                               "hf: names, module:factory, or a run DIR."),
    task: str | None = typer.Option(None, help="Comma-separated task names."),
    weights: str | None = typer.Option(None, help="random | PATH | TAG (default: published)."),
    data_dir: str | None = typer.Option(None, help="Data for real-data tasks."),
    resolution: int | None = typer.Option(None, help="Override the tasks' input size."),
    device: str = typer.Option("cpu", help="cpu | cuda[:N]."),
    dtype: str = typer.Option("fp32", help="fp32 | bf16 | fp16."),
    batch_size: int = typer.Option(64, min=1),
    workers: int = typer.Option(0, min=0, help="Data-loader worker processes."),
    cache_dir: str | None = typer.Option(None, help="Feature cache (default ~/.cache/vitbench)."),
    no_cache: bool = typer.Option(False, help="Encode without reading or writing the cache."),
    skip_bad_images: bool = typer.Option(False, help="Skip undecodable images (and count them)."),
    set_: list[str] = typer.Option([], "--set", help="Protocol setting NAME=VALUE, e.g. ks=10,20."),
    layers: str | None = typer.Option(None, help="Probe these blocks, e.g. -4,-3,-2,-1."),
    pooling: str | None = typer.Option(None, help="cls | mean | cls+mean (with --layers; "
                                                  "default cls)."),
    templates: str | None = typer.Option(None, help="Zero-shot prompts: a text file (one "
                                         "template with {} per line) or a named set, e.g. "
                                         "cifar10 (`vitbench tasks --templates`)."),
    joint_tuning: bool = typer.Option(False, help="*_mllm tasks: tune (a copy of) the encoder "
                                                  "with the projector and LM in stage 2."),
    out: str | None = typer.Option(None, help="Results CSV to append to."),
    fmt: str = typer.Option("table", "--format", help="table | csv | md."),
    all_metrics: bool = typer.Option(False, help="Print every metric, not each task's main one."),
):
    """Evaluate models on tasks. With no --model/--task: the embedded default suite."""
    from vitbench.evals.tasks import DEFAULT_SUITE, get_task
    from vitbench.features import ExtractOptions
    from vitbench.runner import EvalPlan, run_eval

    models, tasks = _split(model), _split(task)
    if not models and tasks:
        raise VitbenchError("--task given without --model (see `vitbench list`)")
    if not models:  # the embedded default suite: random weights and vitbench's own tiny runs
        models, weights = [*DEFAULT_MODELS, *_default_runs(cache_dir)], weights or "random"
    default_tasks = not tasks  # the suite's text tasks then skip encoders without text
    tasks = tasks or list(DEFAULT_SUITE)
    embedded = all(get_task(t).embedded for t in tasks)
    out = out or str(MEASURED / ("embedded.csv" if embedded else "results.csv"))
    plan = EvalPlan(models=models, tasks=tasks, weights=weights, data_dir=data_dir,
                    skip_text_tasks=default_tasks,
                    resolution=resolution, device=device, dtype=dtype, out=out,
                    overrides={**dict(_setting(s) for s in set_), **_feature(layers, pooling),
                               **_templates(templates),
                               **({"joint_tuning": True} if joint_tuning else {})},
                    options=ExtractOptions(batch_size=batch_size, num_workers=workers,
                                           skip_bad_images=skip_bad_images, cache_dir=cache_dir,
                                           use_cache=not no_cache, progress=sys.stderr.isatty()))
    rows = run_eval(plan, on_rows=_report)
    from vitbench.results import pivot, render, rows_frame

    typer.echo(render(pivot(rows_frame(rows), None if all_metrics else _main_metrics()), fmt))
    typer.echo(f"appended {len(rows)} rows to {out}", err=True)


def _templates(path: str | None) -> dict:
    from vitbench.evals.templates import template_sets

    if path is None:
        return {}
    if not Path(path).exists():
        if path in template_sets():
            return {"template_set": path, "templates": ()}  # the set replaces built-in prompts
        raise VitbenchError(f"--templates {path}: no such file, nor a template set (named "
                            f"sets: {', '.join(template_sets())})")
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise VitbenchError(f"cannot read --templates {path}: {exc.strerror}") from None
    templates = tuple(line for line in lines if line)
    if not templates or any("{}" not in t for t in templates):
        raise VitbenchError(f"--templates {path}: every non-empty line must hold a {{}} for the "
                            "class name")
    return {"templates": templates}


def _default_runs(cache_dir: str | None) -> list:
    """Encoders vitbench pretrained itself (pretrain/recipes.py), trained on first use and
    cached, named after their recipe so the leaderboard shows e.g. pico-clip-digits next to
    vit_pico's random weights."""
    from dataclasses import replace

    from vitbench import load
    from vitbench.pretrain.recipes import DEFAULT_RUNS, ensure_run

    encoders = []
    for name in DEFAULT_RUNS:
        typer.echo(f"vitbench-pretrained encoder {name} (trained once, then cached)", err=True)
        encoder = load(str(ensure_run(name, cache_dir, progress=sys.stderr.isatty())))
        encoder.spec = replace(encoder.spec, name=name)
        encoders.append(encoder)
    return encoders


def _report(rows) -> None:
    first = rows[0]
    metrics = " ".join(f"{r.metric}={r.value:.4f}" for r in rows)
    cached = "cached" if first.cache_hit else f"encoded {first.encode_seconds:.1f}s"
    bad = f", skipped {first.n_bad_images} bad images" if first.n_bad_images else ""
    typer.echo(f"{first.model} [{first.weights}, {first.resolution}px] {first.task}: {metrics} "
               f"({cached}, protocol {first.protocol_seconds:.1f}s{bad})", err=True)


def _feature(layers: str | None, pooling: str | None) -> dict:
    """--layers/--pooling as the protocols' `feature` setting ("cls+mean@-4,-3,-2,-1")."""
    if layers is None and pooling is None:
        return {}
    return {"feature": f"{pooling or 'cls'}@{layers or '-1'}"}


def _setting(text: str) -> tuple[str, object]:
    """NAME=VALUE with VALUE as JSON, a comma list of numbers (a tuple), or a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise VitbenchError(f"--set expects NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        pass
    try:
        return name, tuple(json.loads(v) for v in raw.split(","))
    except json.JSONDecodeError:
        return name, raw


@app.command("leaderboard")
@_handled
def leaderboard_cmd(
    results: list[str] | None = typer.Option(None, help="Results CSV(s); default: every CSV "
                                                          "in leaderboards/measured/."),
    table: str | None = typer.Option(None, help="A published table of the source documents, "
                                                "side by side with the measurements (see "
                                                "--tables)."),
    tables: bool = typer.Option(False, "--tables", help="List the published tables."),
    fmt: str = typer.Option("table", "--format", help="table | csv | md | html."),
    plot: str | None = typer.Option(None, help="With --table: write accuracy vs cost with the "
                                               "Pareto front to this PNG."),
    all_metrics: bool = typer.Option(False, help="Every metric, not each task's main one."),
):
    """Pivot result rows into a leaderboard, or compare a published table with them."""
    from vitbench import leaderboards
    from vitbench.results import pivot, render

    if tables:
        typer.echo(_table([{"table": t.name, "title": t.title,
                            "measured by": ", ".join(sorted({m.describe() for m in
                                                             t.measures.values()}))
                            or t.why_unmeasured} for t in leaderboards.TABLES.values()], fmt))
        return
    if table is not None:
        chosen = leaderboards.get_table(table)
        rows = _measured_rows(results, required=False)
        if plot:
            typer.echo(f"wrote {leaderboards.plot_table(chosen, plot)}", err=True)
        typer.echo(render(leaderboards.compare_table(chosen, rows), fmt))
        return
    if plot:
        raise VitbenchError("--plot needs --table NAME (a table with accuracy and cost columns)")
    rows = _measured_rows(results, required=True)
    typer.echo(render(pivot(rows, None if all_metrics else _main_metrics()), fmt))


def _measured_rows(results: list[str] | None, required: bool):
    """Result rows of --results, or of every CSV in leaderboards/measured/."""
    import pandas as pd

    from vitbench.results import COLUMNS, read_rows

    paths = results or sorted(str(p) for p in MEASURED.glob("*.csv"))
    if not paths:
        if required:
            raise VitbenchError(f"no results in {MEASURED}/; run `vitbench eval` or pass "
                                "--results")
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat([read_rows(p) for p in paths])


@app.command("compare")
@_handled
def compare_cmd(
    model_a: str = typer.Argument(..., help="Encoder A (zoo name, run DIR, ...)."),
    model_b: str = typer.Argument(..., help="Encoder B."),
    task: str = typer.Option(..., help="The task both are scored on."),
    metric: str | None = typer.Option(None, help="Default: the task's main metric."),
    weights: str | None = typer.Option(None, help="Weights of A (and of B unless --weights-b)."),
    weights_b: str | None = typer.Option(None, help="Weights of B: random | PATH | TAG."),
    data_dir: str | None = typer.Option(None, help="Data for real-data tasks."),
    device: str = typer.Option("cpu", help="cpu | cuda[:N]."),
    dtype: str = typer.Option("fp32", help="fp32 | bf16 | fp16."),
    samples: int = typer.Option(1000, min=1, help="Bootstrap resamples."),
):
    """Is B better than A on a task? A paired bootstrap on the same examples."""
    from vitbench.evals.tasks import compare_on_task, get_task
    from vitbench.features import ExtractOptions
    from vitbench.runner import EvalPlan, encoder_for

    spec = get_task(task)
    if not spec.embedded and data_dir is None:
        raise VitbenchError(f"task {task} needs data: pass --data-dir DIR")
    options = ExtractOptions(progress=sys.stderr.isatty())

    def encoder(model: str, model_weights: str | None):
        plan = EvalPlan(models=[model], tasks=[task], weights=model_weights, data_dir=data_dir,
                        device=device, dtype=dtype, options=options)
        return encoder_for(model, spec, plan)

    encoders = [encoder(model_a, weights), encoder(model_b, weights_b or weights)]
    result = compare_on_task(spec, *encoders, metric=metric, data_dir=data_dir,
                             options=options, samples=samples)
    paired = result.paired
    verdict = "significant" if paired.significant else "not significant"
    typer.echo(f"{task}/{result.metric} on {result.n} examples: A {model_a} {result.a:.2f}, "
               f"B {model_b} {result.b:.2f}; B - A = {100 * paired.delta:+.2f} points, 95% "
               f"interval [{100 * paired.low:+.2f}, {100 * paired.high:+.2f}], "
               f"p = {paired.p_value:.3f}: {verdict}")


@app.command("pretrain")
@_handled
def pretrain_cmd(
    objective: str | None = typer.Option(None, help="Pretraining objective (see --list)."),
    model: str | None = typer.Option(None, help="Zoo name whose architecture to train, e.g. "
                                               "test_vit."),
    data: str = typer.Option("shapes", help="Dataset name: shapes, digits, folder, csv, ..."),
    data_dir: str | None = typer.Option(None, help="Data for real datasets."),
    steps: int = typer.Option(100, min=1),
    batch_size: int = typer.Option(64, min=1, help="Global batch (all processes)."),
    lr: float | None = typer.Option(None, help="Peak lr (default: the paper's, scaled to the "
                                              "batch)."),
    resolution: int = typer.Option(32, min=8),
    accumulate: int = typer.Option(1, min=1, help="Gradient accumulation steps."),
    checkpoint_every: int = typer.Option(0, min=0, help="Checkpoint every N steps (0: end)."),
    knn_every: int = typer.Option(0, min=0, help="Online kNN on the data's held-out split "
                                                  "every N steps (0: off)."),
    warmup_steps: int | None = typer.Option(None, min=0, help="Warmup steps (default: the "
                                                                "paper's fraction of --steps)."),
    seed: int = typer.Option(0),
    device: str | None = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
    out: str | None = typer.Option(None, help="Run directory (default runs/OBJECTIVE-MODEL)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's last checkpoint."),
    set_: list[str] = typer.Option([], "--set", help="Objective hyperparameter NAME=VALUE."),
    list_: bool = typer.Option(False, "--list", help="List the objectives and exit."),
):
    """Pretrain an encoder; the run directory loads with `vitbench.load(DIR)`."""
    from vitbench.pretrain.objectives import list_objectives

    if list_:
        typer.echo(_table([{"objective": o.name, "needs": "+".join(("image",) + o.needs),
                            "paper": o.paper} for o in list_objectives()], "table"))
        return
    if not objective or not model:
        raise VitbenchError("pretrain needs --objective and --model (or --list)")
    from vitbench.pretrain.trainer import TrainConfig, train

    config = TrainConfig(objective=objective, model=model, data=data, data_dir=data_dir,
                         steps=steps, batch_size=batch_size, lr=lr, resolution=resolution,
                         accumulate=accumulate, checkpoint_every=checkpoint_every,
                         knn_every=knn_every, warmup_steps=warmup_steps, seed=seed,
                         device=device, out=out or f"runs/{objective}-{model}", resume=resume,
                         progress=sys.stderr.isatty(), overrides=dict(_setting(s) for s in set_))
    directory = train(config)
    typer.echo(f"wrote {directory} (vitbench.load({str(directory)!r}))")


@app.command("capfilt")
@_handled
def capfilt_cmd(
    run: str = typer.Argument(..., help="A finished blip run directory."),
    data_dir: str = typer.Option(..., help="The web pairs: a CSV of image,caption rows."),
    out: str = typer.Option(..., help="The bootstrapped pairs CSV to write."),
    data: str = typer.Option("csv", help="Dataset kind of --data-dir."),
    split: str = typer.Option("train"),
    threshold: float = typer.Option(0.5, help="Keep pairs whose ITM match probability is "
                                              "above this (BLIP: 0.5)."),
    batch_size: int = typer.Option(256, min=1),
    device: str = typer.Option("cpu", help="cpu | cuda[:N]."),
):
    """BLIP's CapFilt: caption and filter a noisy pair set with a blip run, write the kept
    pairs as a CSV to pretrain on (`vitbench pretrain --data csv --data-dir OUT`)."""
    from vitbench.data import get_dataset
    from vitbench.pretrain.capfilt import capfilt_to_csv

    found = capfilt_to_csv(run, get_dataset(data, split, data_dir), out, threshold,
                           batch_size, device)
    typer.echo(f"kept {found.web_kept} of {found.web} web pairs and {found.synthetic_kept} of "
               f"{found.synthetic} synthetic captions; wrote {found.path}")


def _main_metrics() -> dict[str, str]:
    from vitbench.evals.tasks import list_tasks

    return {t.name: t.main_metric for t in list_tasks()}


def main() -> None:
    app()


if __name__ == "__main__":
    main()
