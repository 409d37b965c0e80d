"""Objectives of the selfdistill group (registered by pretrain/objectives/__init__.py)."""

from vitbench.pretrain.objectives.dino import Dino
from vitbench.pretrain.objectives.dinov2 import Dinov2
from vitbench.pretrain.objectives.ibot import Ibot

OBJECTIVES: tuple = (Dino, Ibot, Dinov2)
