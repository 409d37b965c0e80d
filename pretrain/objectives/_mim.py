"""Objectives of the mim group (registered by pretrain/objectives/__init__.py)."""

OBJECTIVES: tuple = ()
