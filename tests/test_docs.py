"""docs/zoo.md is generated from the registry and must not go stale."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_zoo_docs_are_up_to_date():
    generated = subprocess.run([sys.executable, str(ROOT / "docs" / "make_zoo.py")],
                               capture_output=True, text=True, check=True, timeout=300).stdout
    assert (ROOT / "docs" / "zoo.md").read_text() == generated, \
        "docs/zoo.md is stale: run `python docs/make_zoo.py > docs/zoo.md`"
