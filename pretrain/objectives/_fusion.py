"""Objectives of the fusion group (registered by pretrain/objectives/__init__.py)."""

from vitbench.pretrain.objectives.albef import Albef
from vitbench.pretrain.objectives.beit3 import Beit3
from vitbench.pretrain.objectives.blip import Blip
from vitbench.pretrain.objectives.vlmo import Vlmo

OBJECTIVES: tuple = (Albef, Blip, Vlmo, Beit3)
