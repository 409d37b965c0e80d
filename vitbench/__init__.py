"""vitbench: pretrained vision encoders, their pretraining loops, and the evals that compare them.

The notebook API:

    >>> import vitbench
    >>> enc = vitbench.load("vit_s16", pretrained=False, resolution=64)
    >>> vitbench.evaluate(enc, "digits_knn")          # a pandas DataFrame of result rows
    >>> vitbench.list_models(), vitbench.list_tasks()
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from vitbench.contract import Encoder


def load(name: str, pretrained=True, **kwargs) -> Encoder:
    """Load a zoo encoder by name; see `vitbench.zoo.registry.load` for the options."""
    from vitbench.errors import check_options
    from vitbench.zoo.registry import load as _load

    check_options(kwargs, ("tag", "resolution", "device", "dtype"), "load")
    return _load(name, pretrained, **kwargs)


def evaluate(model: str | Encoder, task: str | list[str], *, pretrained: bool | str = True,
             data_dir: str | None = None, resolution: int | None = None, device: str = "cpu",
             dtype: str = "fp32", batch_size: int = 64, cache_dir: str | None = None,
             out: str | None = None, **settings) -> pd.DataFrame:
    """Evaluate a model (name or Encoder) on one or more tasks; returns the result rows.

    Extra keyword arguments override the task's protocol settings (e.g. `ks=(5,)`); unknown
    ones are rejected with the accepted names.
    """
    from vitbench.features import ExtractOptions
    from vitbench.runner import EvalPlan, run_eval

    plan = EvalPlan(models=[model], tasks=[task] if isinstance(task, str) else list(task),
                    weights=pretrained, data_dir=data_dir, resolution=resolution, device=device,
                    dtype=dtype, overrides=settings, out=out,
                    options=ExtractOptions(batch_size=batch_size, cache_dir=cache_dir,
                                           progress=False))
    from vitbench.results import rows_frame

    return rows_frame(run_eval(plan))


def list_models(**filters) -> list[str]:
    """Registered encoder names (filters: family=, supervision=, backend=)."""
    from vitbench.zoo.registry import list_models as _list

    return [s.name for s in _list(**filters)]


def list_tasks() -> list[str]:
    from vitbench.evals.tasks import list_tasks as _list

    return [t.name for t in _list()]
