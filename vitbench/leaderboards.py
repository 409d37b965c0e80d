"""Published tables of the source documents, side by side with what vitbench measured.

Each table of the slides is a CSV in `leaderboards/published/` (columns as in the slide, plus
`vitbench_model`, the zoo entry a row is about, and `source`, the paper). A `PublishedTable`
says which of its columns vitbench can measure and how: a task metric from result rows
(`vitbench eval`), or a fact of the zoo spec (parameters, GFLOPs; checked against the backends
by tests/test_zoo.py). `compare_table` puts the two side by side, one line per measurable
cell, with the delta, the provenance of the measurement, or the command that would fill it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from vitbench.errors import UnknownNameError, VitbenchError

PUBLISHED = Path(str(resources.files("vitbench.published")))  # leaderboards/published/
EXTRA_COLUMNS = ("vitbench_model", "source")  # not in the slides


@dataclass(frozen=True)
class TaskMeasure:
    """A published column measured by `vitbench eval --task <task>` as `<metric>`."""

    task: str
    metric: str

    def describe(self) -> str:
        return self.task


@dataclass(frozen=True)
class SpecMeasure:
    """A published column that is a fact of the zoo spec (`EncoderSpec.<attribute>`)."""

    attribute: str

    def describe(self) -> str:
        return f"zoo spec {self.attribute}"


Measure = TaskMeasure | SpecMeasure


@dataclass(frozen=True)
class PublishedTable:
    name: str  # file stem in leaderboards/published/
    title: str
    keys: tuple[str, ...]  # the columns that name a row
    measures: dict[str, Measure] = field(default_factory=dict)  # column -> how to measure it
    why_unmeasured: str = ""  # for tables vitbench cannot measure: why
    # (column, value, why): rows vitbench cannot measure although the table can be
    rows_unmeasured: tuple[tuple[str, str, str], ...] = ()
    plot: tuple[str, tuple[str, ...]] | None = None  # (y column, x columns) for --plot

    def read(self) -> pd.DataFrame:
        path = PUBLISHED / f"{self.name}.csv"
        return pd.read_csv(path, dtype={"vitbench_model": str}, keep_default_na=False,
                           na_values=[""])


_IMAGENET_ZS = TaskMeasure("imagenet_zeroshot", "top1")
_PARAMS_GFLOPS = {"Params(M)": SpecMeasure("params_m"), "FLOPs(G)": SpecMeasure("gflops")}
_FINE_TUNED = ("fine-tuned transfer (detection, segmentation, end-to-end ImageNet training) is "
               "outside vitbench's frozen-feature protocols")
_TRAINING = "a pretraining ablation: its rows are training runs, not zoo encoders"

TABLES: dict[str, PublishedTable] = {t.name: t for t in (
    PublishedTable("dinov2_knn_linear", "DINOv2 Table 4: ImageNet-1k kNN and linear probes",
                   ("Method", "Arch."), {
                       "kNN val": TaskMeasure("imagenet_knn", "top1_k20"),
                       "linear val": TaskMeasure("imagenet_linear", "top1")}),
    PublishedTable("dinov2_data_sources", "DINOv2 Table 2: source of pretraining data",
                   ("Training Data",), why_unmeasured=_TRAINING),
    PublishedTable("dinov2_lvd142m", "DINOv2 Table 15: composition of LVD-142M",
                   ("Task", "Dataset / Split", "Retrieval"),
                   why_unmeasured="a dataset's composition, not a measurement"),
    PublishedTable("openclip_vs_clip", "OpenCLIP vs CLIP: zero-shot ImageNet and COCO",
                   ("Model", "Data", "Arch."), {
                       "ImageNet": _IMAGENET_ZS,
                       "COCO": TaskMeasure("coco_retrieval", "text_to_image_r5")}),
    PublishedTable("siglip_vs_clip", "SigLIP Table 3: zero-shot ImageNet and COCO R@1",
                   ("Method", "ViT size", "# Patches"), {
                       "ImageNet-1k Validation": _IMAGENET_ZS,
                       "COCO R@1 I→T": TaskMeasure("coco_retrieval", "image_to_text_r1"),
                       "COCO R@1 T→I": TaskMeasure("coco_retrieval", "text_to_image_r1")}),
    PublishedTable("siglip_batch_size", "SigLIP Table 2: batch size, sigmoid vs softmax",
                   ("Batch Size",), why_unmeasured=_TRAINING),
    PublishedTable("siglip_training_cost", "SigLIP Table 1: SigLiT and SigLIP training cost",
                   ("Model", "Image", "Text", "BS", "Days"), why_unmeasured=_TRAINING),
    PublishedTable("small_backbones", "Small backbones (~4.5 GFLOPs) on ImageNet-1k",
                   ("Model",), _PARAMS_GFLOPS, plot=("Top1-acc(%)", ("Params(M)", "FLOPs(G)"))),
    PublishedTable("visual_tokenizer", "GVT Table 1: encoders as visual tokenizers of an MLLM",
                   ("Joint Tuning", "Visual Tokenizer"), {
                       "VQA Acc": TaskMeasure("vqav2_mllm", "vqa_acc"),
                       "Captioning CIDEr": TaskMeasure("coco_mllm", "caption_cider"),
                       "OC Acc": TaskMeasure("gvt_mllm", "oc_acc"),
                       "MCI Acc": TaskMeasure("gvt_mllm", "mci_acc")},
                   rows_unmeasured=(("Joint Tuning", "yes", "joint tuning of the encoder with "
                                     "the language model is not implemented"),)),
    PublishedTable("mae_ade20k", "MAE Table 5: ADE20K semantic segmentation (mIoU)",
                   ("method",), why_unmeasured=_FINE_TUNED),
    PublishedTable("mae_coco", "MAE Table 4: COCO detection and segmentation (AP)",
                   ("method",), why_unmeasured=_FINE_TUNED),
)}


def get_table(name: str) -> PublishedTable:
    if name not in TABLES:
        raise UnknownNameError("table", name, TABLES)
    return TABLES[name]


def compare_table(table: PublishedTable, measured: pd.DataFrame) -> pd.DataFrame:
    """Published vs measured, one row per (published row, measurable column).

    `measured` holds result rows (vitbench/results.py); only pretrained weights count for
    task metrics (random weights say nothing about a paper's number), the latest row wins.
    Tables with nothing to measure come back as published.
    """
    published = table.read()
    if not table.measures:
        return published.drop(columns=list(EXTRA_COLUMNS))
    latest = _latest_pretrained(measured)
    lines = []
    for _, row in published.iterrows():
        model = row["vitbench_model"] if isinstance(row["vitbench_model"], str) else ""
        skipped = [why for column, value, why in table.rows_unmeasured
                   if str(row[column]) == value]
        for column, measure in table.measures.items():
            value, how = (np.nan, skipped[0]) if skipped else \
                _measurement(model, measure, latest)
            expected = row[column]
            lines.append({**{k: row[k] for k in table.keys}, "vitbench_model": model,
                          "column": column, "published": expected, "measured": value,
                          "delta": value - expected if np.isfinite(value) and
                          np.isfinite(expected) else np.nan, "how": how})
    return pd.DataFrame(lines)


def _latest_pretrained(measured: pd.DataFrame) -> pd.DataFrame:
    if measured.empty:
        return measured
    frame = measured[~measured["weights"].astype(str).str.startswith("random")]
    return frame.sort_values("timestamp").drop_duplicates(["model", "task", "metric"],
                                                          keep="last")


def _measurement(model: str, measure: Measure, latest: pd.DataFrame) -> tuple[float, str]:
    """(value, provenance) of one cell; (nan, what to do) when there is none."""
    if not model:
        return np.nan, "no zoo entry for this row"
    if isinstance(measure, SpecMeasure):
        from vitbench.zoo.registry import get_entry

        value = getattr(get_entry(model).spec, measure.attribute)
        return (np.nan, "not recorded in the zoo spec") if value is None else \
            (float(value), "zoo spec (counted on the backend model by tests/test_zoo.py)")
    match = latest[(latest["model"] == model) & (latest["task"] == measure.task)
                   & (latest["metric"] == measure.metric)] if not latest.empty else latest
    if match.empty:
        return np.nan, fill_command(model, measure.task)
    found = match.iloc[-1]
    return float(found["value"]), (f"{found['weights']} {found['device']} {found['dtype']} "
                                   f"sha {found['git_sha']} {found['timestamp']}")


def fill_command(model: str, task: str) -> str:
    """The `vitbench eval` command that would measure this cell."""
    from vitbench.evals.tasks import get_task

    data = "" if get_task(task).embedded else " --data-dir DIR"
    return f"vitbench eval --model {model} --task {task}{data}"


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (lower or equal x and higher or equal y,
    one of them strictly), sorted by x: the accuracy-vs-cost frontier."""
    order = np.lexsort((-y, x))  # by cost, best accuracy first among equal costs
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def plot_table(table: PublishedTable, path: str | Path) -> Path:
    """Accuracy against each cost column, published points and their Pareto front."""
    if table.plot is None:
        raise VitbenchError(f"table {table.name} has no accuracy-vs-cost axes to plot; "
                            f"plottable: {', '.join(n for n, t in TABLES.items() if t.plot)}")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    y_column, x_columns = table.plot
    data = table.read()
    label = data[table.keys[0]].astype(str)
    figure, axes = plt.subplots(1, len(x_columns), figsize=(6 * len(x_columns), 5),
                                squeeze=False)
    for ax, x_column in zip(axes[0], x_columns, strict=True):
        x, y = data[x_column].to_numpy(float), data[y_column].to_numpy(float)
        ax.scatter(x, y, color="tab:blue")
        front = pareto_front(x, y)
        ax.plot(x[front], y[front], color="tab:red", label="Pareto front")
        for xi, yi, name in zip(x, y, label, strict=True):
            ax.annotate(name, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=x_column, ylabel=y_column, title=table.title)
        ax.legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
