"""Objectives of the contrastive group (registered by pretrain/objectives/__init__.py)."""

from vitbench.pretrain.objectives.coca import Coca
from vitbench.pretrain.objectives.flip import Flip
from vitbench.pretrain.objectives.mode import Mode
from vitbench.pretrain.objectives.siglip import Siglip

OBJECTIVES: tuple = (Siglip, Flip, Coca, Mode)
