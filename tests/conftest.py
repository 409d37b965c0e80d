"""Test-wide settings: offline hubs, and a private feature cache per test session."""

import os
import tempfile

# Before anything imports huggingface_hub / datasets: they read these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["VITBENCH_CACHE"] = tempfile.mkdtemp(prefix="vitbench-test-cache-")
