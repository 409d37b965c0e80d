"""Result rows: locked appends from parallel processes, atomic rewrites, pivots."""

import csv
import multiprocessing as mp

import pandas as pd
import pytest

from vitbench.errors import VitbenchError
from vitbench.results import COLUMNS, ResultRow, append_rows, pivot, read_rows, render


def _row(model="m", task="t", metric="top1", value=1.0, **kw):
    base = dict(model=model, task=task, dataset="d", split="test", protocol="knn",
                metric=metric, value=value, n_train=10, n_eval=5, settings="{}", seed=0,
                weights="random:random", weights_id="seed0", resolution=32, device="cpu",
                dtype="fp32", encode_seconds=0.1, protocol_seconds=0.1, cache_hit=False)
    return ResultRow(**{**base, **kw})


def _writer(path, worker, n):
    for i in range(n):
        append_rows(path, [_row(model=f"w{worker}", value=i), _row(model=f"w{worker}",
                                                                    metric="top5", value=i)])


def test_parallel_appends_lose_nothing(tmp_path):
    path = tmp_path / "results.csv"
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, w, 15))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 15 * 2
    assert list(rows[0]) == COLUMNS
    for w in range(4):  # each writer's rows are all there, in its own order
        mine = [int(float(r["value"])) for r in rows if r["model"] == f"w{w}" and
                r["metric"] == "top1"]
        assert mine == list(range(15))


def test_foreign_csv_is_not_appended_to(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(VitbenchError, match="header"):
        append_rows(path, [_row()])
    assert path.read_text() == "a,b\n1,2\n"


def test_pivot_keeps_the_latest_value_per_cell(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [_row(model="a", value=0.5, timestamp="2026-01-01T00:00:00+00:00"),
                       _row(model="b", value=0.7, timestamp="2026-01-01T00:00:00+00:00")])
    append_rows(path, [_row(model="a", value=0.9, timestamp="2026-01-02T00:00:00+00:00")])
    table = pivot(read_rows(path))
    assert table.set_index("model").loc["a", "t/top1"] == 0.9
    assert table.set_index("model").loc["b", "t/top1"] == 0.7
    assert "| model" in render(table, "md") and render(table, "csv").startswith("model,")
    with pytest.raises(VitbenchError, match="accepted"):
        render(table, "xml")
    assert pivot(pd.DataFrame()).empty
    append_rows(path, [_row(model="a", metric="top5", value=1.0)])
    assert "t/top5" in pivot(read_rows(path)).columns
    assert list(pivot(read_rows(path), {"t": "top1"}).columns) == ["model", "weights", "t/top1"]
