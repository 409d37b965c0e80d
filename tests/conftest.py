"""Test-wide settings: offline hubs, and a private feature cache per test session."""

import os
import tempfile

import pytest

# Before anything imports huggingface_hub / datasets: they read these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["VITBENCH_CACHE"] = tempfile.mkdtemp(prefix="vitbench-test-cache-")


@pytest.fixture(scope="session")
def pico_clip_run() -> str:
    """The default suite's CLIP recipe (pretrain/recipes.py), trained once per session into
    the session cache: its own learns test measures it, the EVA / EVA-02 / BEiT v2 learns tests
    take it as their image-text teacher, and test_default_suite evaluates the same run."""
    from vitbench.pretrain.recipes import ensure_run

    return str(ensure_run("pico-clip-digits"))
