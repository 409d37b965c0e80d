"""The objective registry: name -> Objective class."""

from __future__ import annotations

from vitbench.errors import UnknownNameError
from vitbench.pretrain.objectives.base import Hyperparameters, Objective, StepOutput
from vitbench.pretrain.objectives.clip import Clip
from vitbench.pretrain.objectives.supervised import Supervised

__all__ = ["Hyperparameters", "Objective", "StepOutput", "get_objective", "list_objectives"]

from vitbench.pretrain.objectives import _contrastive, _fusion, _mim, _selfdistill  # noqa: E402

_OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (Supervised, Clip, *_contrastive.OBJECTIVES, *_selfdistill.OBJECTIVES,
                              *_mim.OBJECTIVES, *_fusion.OBJECTIVES)}


def list_objectives() -> list[type[Objective]]:
    return list(_OBJECTIVES.values())


def get_objective(name: str) -> type[Objective]:
    try:
        return _OBJECTIVES[name.strip().lower()]
    except KeyError:
        raise UnknownNameError("objective", name, _OBJECTIVES) from None
