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

`gflops` counts multiply-accumulates of one image-tower forward at the native resolution
(matmuls and convolutions, measured on the meta device; Vision Mamba's scan is not counted).

Not an encoder: InstructDiffusion (covered by the source documents) is an image-editing
diffusion model, so it has no entry here.

Rows of the source documents' small-backbone table (~4.5 GFLOPs) that no library carries
(timm, open_clip and transformers have none of them), hence no entry: Focal-T, RegionViT-S,
CSWin-T, MPViT-S, ScalableViT-S, MOAT-0, Ortho-S, InternImage-T, CMT-S, FAT-B3, SMT-S,
BiFormer-S, RMT-S. The rows that are here: DeiT-S (`deit_s16`), Swin-T (`swin_t`), ConvNeXt-T
(`convnext_t`), InceptionNeXt-T (`inceptionnext_t`), FocalNet-T (`focalnet_t`), MaxViT-T
(`maxvit_t`).
"""


def main() -> None:
    rows = [spec.summary(long=True) for spec in list_models()]
    print(HEADER)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
