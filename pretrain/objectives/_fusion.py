"""Objectives of the fusion group (registered by pretrain/objectives/__init__.py)."""

OBJECTIVES: tuple = ()
