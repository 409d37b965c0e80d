"""Test-wide settings: offline hubs, and a private feature cache per test session."""

import os
import tempfile

import pytest

# Before anything imports huggingface_hub / datasets: they read these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# One cache per test run: xdist workers (`-n 2`, both suites) share it, so the session
# recipes (pico_clip_run) train once, under ensure_run's file lock, not once per worker.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
    _CACHE = os.path.join(tempfile.gettempdir(), f"vitbench-test-cache-{_RUN}")
    os.makedirs(_CACHE, exist_ok=True)
    os.environ["VITBENCH_CACHE"] = _CACHE
    # one thread per worker: two workers on two cores instead of four threads fighting
    os.environ.setdefault("OMP_NUM_THREADS", "1")
else:
    os.environ["VITBENCH_CACHE"] = tempfile.mkdtemp(prefix="vitbench-test-cache-")


@pytest.fixture(scope="session")
def pico_clip_run() -> str:
    """The default suite's CLIP recipe (pretrain/recipes.py), trained once per session into
    the session cache: its own learns test measures it, the EVA / EVA-02 / BEiT v2 learns tests
    take it as their image-text teacher, and test_default_suite evaluates the same run."""
    from vitbench.pretrain.recipes import ensure_run

    return str(ensure_run("pico-clip-digits"))
