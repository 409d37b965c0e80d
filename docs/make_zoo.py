"""Regenerate docs/zoo.md from the registry: `python docs/make_zoo.py > docs/zoo.md`.

tests/test_docs.py fails when the committed file differs from what this prints.
"""

import pandas as pd

from vitbench.zoo.registry import list_models

HEADER = """# The vitbench zoo

Generated from the registry by `python docs/make_zoo.py > docs/zoo.md`; do not edit by hand.
Every entry builds offline with random weights (`--weights random`) and is parity-tested
against its backend (tests/test_zoo.py). `params_m` is the image tower's parameter count as the
backend builds it. Any other timm, open_clip or transformers model works by name too:
`timm:<name>`, `open_clip:<arch>/<tag>`, `hf:<dir or cached hub id>`.

Not an encoder: InstructDiffusion (covered by the source documents) is an image-editing
diffusion model, so it has no entry here.
"""


def main() -> None:
    rows = [spec.summary(long=True) for spec in list_models()]
    print(HEADER)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
