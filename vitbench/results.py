"""Typed result rows, crash-safe CSV appends, and leaderboard pivots over rows."""

from __future__ import annotations

import csv
import functools
import io
import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from filelock import FileLock

from vitbench import __version__
from vitbench.errors import VitbenchError
from vitbench.io import atomic_write_text


@dataclass(frozen=True)
class ResultRow:
    """One measured (or published) number with everything needed to trust it."""

    model: str
    task: str
    dataset: str
    split: str
    protocol: str
    metric: str
    value: float
    n_train: int
    n_eval: int
    settings: str  # JSON of the protocol settings actually used (overrides included)
    seed: int
    weights: str  # "random:random", "hub:<tag>", "file:<name>"
    weights_id: str  # seed, content hash, or hub repo@commit
    resolution: int
    device: str
    dtype: str
    encode_seconds: float
    protocol_seconds: float
    cache_hit: bool
    n_bad_images: int = 0
    source: str = "measured"  # or "published"
    reference: str = ""  # paper/table for published numbers
    vitbench_version: str = __version__
    git_sha: str = field(default_factory=lambda: git_sha())
    host: str = field(default_factory=platform.node)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))
    # the metric's 95% bootstrap interval (few-shot: mean -+ std over seeds); empty if none
    low: float | None = None
    high: float | None = None


COLUMNS = [f.name for f in fields(ResultRow)]


@functools.cache
def git_sha() -> str:
    """The commit of the vitbench checkout in use ("" when installed without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def settings_json(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def append_rows(path: str | Path, rows: list[ResultRow]) -> None:
    """Append rows to a CSV under a file lock, rewriting it atomically.

    Parallel runs never interleave or lose rows (the lock), and a run killed mid-write leaves
    the previous complete file (the atomic rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        old = _upgraded(path.read_text(encoding="utf-8") if path.exists() else "", path)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        if not old:
            writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write_text(path, old + buffer.getvalue())


def _upgraded(text: str, path: Path) -> str:
    """An older vitbench CSV, whose columns are a prefix of today's, with the new columns
    added empty; any other header is refused."""
    if not text:
        return text
    header, _, body = text.partition("\n")
    old = header.split(",")
    if old == COLUMNS:
        return text
    if old != COLUMNS[:len(old)]:
        raise VitbenchError(f"{path} is not a vitbench results CSV of this version "
                            "(its header differs); choose another --out")
    pad = "," * (len(COLUMNS) - len(old))
    lines = [line + pad for line in body.splitlines() if line]
    return "\n".join([",".join(COLUMNS), *lines]) + "\n"


def rows_frame(rows: list[ResultRow]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def read_rows(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise VitbenchError(f"no results file {path}; run `vitbench eval` first or pass --results")
    return pd.read_csv(path)


def pivot(rows: pd.DataFrame, main_metrics: dict[str, str] | None = None) -> pd.DataFrame:
    """Leaderboard: one row per (model, weights), one column per task/metric, latest value.

    With `main_metrics` (task -> metric), only those columns are kept (tasks it does not
    name keep all their metrics).
    """
    if rows.empty:
        return pd.DataFrame()
    frame = rows.sort_values("timestamp").copy()
    if main_metrics:
        wanted = frame["task"].map(main_metrics)
        frame = frame[wanted.isna() | (frame["metric"] == wanted)]
    frame["column"] = frame["task"] + "/" + frame["metric"]
    table = frame.pivot_table(index=["model", "weights"], columns="column", values="value",
                              aggfunc="last", sort=False)
    table.columns.name = None
    return table.reset_index()


def render(table: pd.DataFrame, fmt: str) -> str:
    """A table as terminal text, CSV, Markdown or HTML."""
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.4f")
    if fmt == "md":
        # tabulate leaves only None blank, not NaN
        return table.astype(object).where(table.notna(), None).to_markdown(
            index=False, floatfmt=".4f", missingval="")
    if fmt == "html":
        return table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
    if fmt == "table":
        return table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
    raise VitbenchError(f"unknown format {fmt!r}; accepted: table, csv, md, html")
