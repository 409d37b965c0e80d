"""Objectives of the mim group (registered by pretrain/objectives/__init__.py)."""

from vitbench.pretrain.objectives.beit import Beit
from vitbench.pretrain.objectives.beitv2 import BeitV2
from vitbench.pretrain.objectives.eva import Eva, Eva02
from vitbench.pretrain.objectives.mae import Mae

OBJECTIVES: tuple = (Mae, Beit, BeitV2, Eva, Eva02)
