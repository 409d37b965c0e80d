"""Tokenize Anything (TAP) image encoder: a windowed ViT with convolutional cross-window blocks.

Pan et al., "Tokenize Anything via Prompting", arXiv:2312.09128; github.com/baaivision/
tokenize-anything, tokenize_anything/modeling/image_encoder.py. TAP keeps SAM's role for the
image encoder (1024 px in, a 256-channel 64x64 map out for the promptable decoder) but not its
architecture, so timm's samvit does not load it:

- every block attends within 16x16-token windows; there are no global-attention blocks;
- windows exchange information through four ResNet bottlenecks (1x1, 3x3, 1x1 convs with
  BatchNorm and GELU, residual) run on the full feature map after every depth/4-th block, as
  in ViTDet's "residual conv propagation" variant;
- the relative position term is a learned bias table per head (as in Swin), not SAM's
  decomposed height/width embeddings;
- one LayerNorm after the last block (before its bottleneck), then a neck of a 1x1 and a 3x3
  conv, each with BatchNorm (SimpleFeaturePyramid at stride 16 reduces to this);
- absolute position embeddings, no class token, fixed at the training resolution.

The model reads BGR images (the repo decodes with OpenCV); vitbench's transform gives RGB, so
`forward_image` flips the channels once instead of rewriting the patch-embedding weights.

Official checkpoints are whole TAP models (`image_encoder.*`, `prompt_encoder.*`,
`image_decoder.*`, `text_decoder.*`, ...); `convert` keeps the image encoder. Module names
below mirror the official ones, so the mapping is a prefix and nothing else.
"""

from __future__ import annotations

import torch
from torch import nn

from vitbench.contract import ImageFeatures
from vitbench.errors import VitbenchError
from vitbench.zoo.reference.base import ReferenceModel

PATCH = 16  # the neck below is SimpleFeaturePyramid's stride-16 level only
PREFIX = "image_encoder."


class TapImageEncoder(ReferenceModel):
    """The TAP image encoder; `tokens` = the neck's map flattened, `pooled` = its mean."""

    def __init__(self, depth: int = 24, embed_dim: int = 1024, num_heads: int = 16,
                 img_size: int = 1024, window_size: int = 16, out_dim: int = 256,
                 mlp_ratio: float = 4.0):
        super().__init__()
        grid = img_size // PATCH
        if depth % 4 or grid % window_size:
            raise ValueError(f"TAP needs depth % 4 == 0 and a {grid}-patch grid divisible by "
                             f"window_size {window_size}")
        self.window = window_size
        self.patch_embed = _PatchEmbed(embed_dim)
        self.pos_embed = _PosEmbed(grid * grid, embed_dim)
        self.blocks = nn.ModuleList(_Block(embed_dim, num_heads, mlp_ratio, window_size)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.cross_conv = nn.ModuleList(_Bottleneck(embed_dim) for _ in range(4))
        self.neck = _Neck(embed_dim, out_dim)
        # block index -> bottleneck after it: blocks depth/4 - 1, 2 depth/4 - 1, ..., depth - 1
        self.cross_after = {(k + 1) * depth // 4 - 1: k for k in range(4)}

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        if layers:
            raise VitbenchError("per-layer features are not available for the TAP encoder "
                                "(its blocks run on windows, not on the image)")
        b, _, h, w = pixels.shape
        rows, cols = h // PATCH, w // PATCH
        x = self.pos_embed(self.patch_embed(pixels.flip(1)))  # RGB -> BGR, as TAP was trained
        x = _to_windows(x.reshape(b, rows, cols, -1), self.window)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.cross_after:
                if i == last:
                    x = self.norm(x)
                grid = _from_windows(x, self.window, b, rows, cols).permute(0, 3, 1, 2)
                x = self.cross_conv[self.cross_after[i]](grid)
                if i < last:
                    x = _to_windows(x.permute(0, 2, 3, 1), self.window)
        tokens = self.neck(x).flatten(2).transpose(1, 2)  # (B, rows*cols, out_dim)
        return ImageFeatures(pooled=tokens.mean(1), tokens=tokens)

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official TAP keys -> these: keep `image_encoder.*` without the prefix, and drop the
        relative-position index buffers (derived from the window size, rebuilt here).

        A state dict without `image_encoder.` keys is taken as this module's own layout.
        """
        if any(k.startswith(PREFIX) for k in state):
            state = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
        return {k: v for k, v in state.items() if not k.endswith("rel_pos_embed.index")}


def _to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, window**2, C), windows and their tokens row-major."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _from_windows(x: torch.Tensor, window: int, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `_to_windows`: (B * windows, window**2, C) -> (B, H, W, C)."""
    x = x.reshape(b, h // window, w // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _PosEmbed(nn.Module):
    def __init__(self, num_patches: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_patches, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.weight.shape[0]:
            raise VitbenchError(f"TAP runs at a fixed size: {self.weight.shape[0]} patches, got "
                                f"{x.shape[1]}")
        return x + self.weight


class _RelPosBias(nn.Module):
    """A learned bias per head and relative (dy, dx) inside a window, added to the logits."""

    def __init__(self, num_heads: int, window: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, (2 * window - 1) ** 2))
        pos = torch.cartesian_prod(torch.arange(window), torch.arange(window))  # (N, 2): y, x
        delta = pos[:, None, :] - pos[None, :, :] + (window - 1)  # shifted to be >= 0
        # derived from the window size, so not part of the state dict
        self.register_buffer("index", delta[..., 0] * (2 * window - 1) + delta[..., 1],
                             persistent=False)

    def forward(self) -> torch.Tensor:
        return self.weight[:, self.index]  # (heads, N, N)


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_embed = _RelPosBias(num_heads, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, self.rel_pos_embed())
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * ratio))
        self.fc2 = nn.Linear(int(dim * ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Bottleneck(nn.Module):
    """ResNet bottleneck (width dim/2) across window borders; no activation after the sum."""

    def __init__(self, dim: int):
        super().__init__()
        width = dim // 2
        self.conv1 = nn.Conv2d(dim, width, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, dim, 1, bias=False)
        self.norm3 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gelu = nn.functional.gelu
        y = gelu(self.norm1(self.conv1(x)))
        y = gelu(self.norm2(self.conv2(y)))
        return x + self.norm3(self.conv3(y))


class _Neck(nn.Module):
    """The stride-16 level of TAP's SimpleFeaturePyramid: 1x1 conv + BN, 3x3 conv + BN."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.lateral_conv = nn.ModuleList([nn.Sequential(
            nn.Conv2d(dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim))])
        self.output_conv = nn.ModuleList([nn.Sequential(
            nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False), nn.BatchNorm2d(out_dim))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_conv[0](self.lateral_conv[0](x))
