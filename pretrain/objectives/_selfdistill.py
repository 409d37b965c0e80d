"""Objectives of the selfdistill group (registered by pretrain/objectives/__init__.py)."""

OBJECTIVES: tuple = ()
