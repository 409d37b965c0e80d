"""Objectives of the contrastive group (registered by pretrain/objectives/__init__.py)."""

OBJECTIVES: tuple = ()
