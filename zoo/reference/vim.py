"""Vision Mamba (Vim): a ViT-like stack of bidirectional selective state-space (Mamba) blocks.

Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with Bidirectional State
Space Model", arXiv:2401.09417; official code github.com/hustvl/Vim (vim/models_mamba.py, and
the "v2" bidirectional Mamba block of its mamba-1p1p1 fork, mamba_ssm/modules/mamba_simple.py).

The released "midclstok" models (`vim_{tiny,small}_patch16_224_bimambav2_final_pool_mean_
abs_pos_embed_with_midclstok_div2`) are, written out:

    x = patches(image); insert the class token at index M // 2 of the M patch tokens; + pos_embed
    residual = x; hidden = mixer_0(rms_0(x))                       # first block: no add
    residual = residual + hidden; hidden = mixer_i(rms_i(residual)) # blocks 1 .. depth-1
    out = rms_f(residual + hidden); pooled = out[:, M // 2]          # what the head reads

This is the official `fused_add_norm` (add, then RMSNorm, with the residual kept in fp32) spelt
out. Each mixer runs one selective scan forward and one over the flipped sequence, each with
its own conv1d / x_proj / dt_proj / A_log / D, sharing in_proj (including the gate z) and
out_proj, and averages the two (`if_divide_out`).

The selective scan is plain torch: `selective_scan_recurrence` is the step-by-step definition;
`selective_scan` computes the same numbers with everything but the state update vectorised over
chunks of the sequence, and is what the model runs. mamba_ssm's CUDA kernels are not used.

Key layout: this module groups each direction's parameters in a `ScanDirection` (`mixer.ssm`,
`mixer.ssm_b`); `VisionMamba.convert` maps the official flat names (`mixer.conv1d_b.weight`,
`mixer.A_b_log`, `mixer.D_b`, ...) onto it. Everything else keeps the official names.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.contract import ImageFeatures, LayerOutput
from vitbench.errors import VitbenchError
from vitbench.zoo.adapters.timm import block_indices
from vitbench.zoo.reference.base import ReferenceModel

# -- the selective scan ------------------------------------------------------------------------
#
# Token-major shapes (the layout the projections produce, so per-position slices are
# contiguous): u, delta (batch, L, d_inner); A (d_inner, N); B, C (batch, L, N); D (d_inner).
# With the state h_t (batch, d_inner, N) and h_{-1} = 0:
#     h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,    y_t = <h_t, C_t> + D * u_t
# `delta` is already positive here (softplus(dt_proj(.)) is taken by the caller).


def selective_scan_recurrence(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                              B: torch.Tensor, C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The definition: one step of the recurrence per position (slow; the tests' reference)."""
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        dt = delta[:, t, :, None]
        h = torch.exp(dt * A) * h + dt * B[:, t, None, :] * u[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1) + D * u


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, D: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """The same scan, vectorised over chunks of `chunk` positions: per chunk, the decays
    exp(delta * A), the inputs delta * B * u and the read-out by C are one tensor op each over
    (batch, chunk, d_inner, N); only the state update h = decay * h + input runs position by
    position, as one fused multiply-add.

    Why not a parallel (Hillis-Steele) prefix scan: the scan is memory-bound, and doubling
    steps move log2(chunk) times more data; measured on CPU it was several times slower than
    this loop. Chunking bounds memory to (batch, chunk, d_inner, N) whatever the length.
    """
    if u.is_meta:  # no values to scan, only a shape: skip thousands of slow meta-op dispatches
        return torch.empty_like(u)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for start in range(0, u.shape[1], chunk):
        window = slice(start, start + chunk)
        dt = delta[:, window, :, None]  # (b, T, d, 1)
        decay = torch.exp(dt * A)  # (b, T, d, N)
        drive = (dt * u[:, window, :, None]) * B[:, window, None, :]
        states = []
        for t in range(decay.shape[1]):
            h = torch.addcmul(drive[:, t], decay[:, t], h)
            states.append(h)
        ys.append((torch.stack(states, dim=1) * C[:, window, None, :]).sum(-1))
    return torch.cat(ys, dim=1) + D * u


# -- blocks ------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 (mamba_ssm's RMSNorm: no bias, eps 1e-5)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps) * self.weight.float()


class ScanDirection(nn.Module):
    """One direction of the bidirectional mixer: causal depthwise conv, input-dependent
    (delta, B, C), selective scan, gated by silu(z)."""

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, d_conv: int, chunk: int):
        super().__init__()
        self.dt_rank, self.d_state, self.chunk = dt_rank, d_state, chunk
        # padding d_conv - 1 on both sides, then keep the first L outputs: a causal conv
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        # S4D-real initialisation: A = -(1, 2, ..., N) per channel, stored as log(-A)
        a = torch.arange(1, d_state + 1, dtype=torch.float32)
        self.A_log = nn.Parameter(torch.log(a).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x, z: (b, L, d_inner) -> gated scan output (b, L, d_inner)."""
        length = x.shape[1]
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length]).transpose(1, 2)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        # mamba_ssm runs the scan in fp32 whatever the autocast dtype
        delta = F.softplus(self.dt_proj(dt).float())
        A = -torch.exp(self.A_log.float())
        y = selective_scan(x.float(), delta, A, B.float(), C.float(), self.D.float(),
                           chunk=self.chunk)
        return y * F.silu(z.float())


class BiMamba(nn.Module):
    """The bimamba "v2" mixer: shared in_proj/out_proj, one scan per direction, averaged."""

    def __init__(self, dim: int, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 chunk: int = 32):
        super().__init__()
        d_inner, dt_rank = expand * dim, math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.ssm = ScanDirection(d_inner, d_state, dt_rank, d_conv, chunk)
        self.ssm_b = ScanDirection(d_inner, d_state, dt_rank, d_conv, chunk)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(b, L, dim) -> (b, L, dim)."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        forward = self.ssm(x, z)
        backward = self.ssm_b(x.flip(1), z.flip(1)).flip(1)
        return self.out_proj((forward + backward) / 2)


class Block(nn.Module):
    """Add -> RMSNorm -> mixer, returning (mixer output, residual stream) as Vim's Block does."""

    def __init__(self, dim: int, eps: float, **mixer):
        super().__init__()
        self.norm = RMSNorm(dim, eps)
        self.mixer = BiMamba(dim, **mixer)

    def forward(self, hidden: torch.Tensor,
                residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # residual_in_fp32: the stream is accumulated in fp32 even under autocast
        residual = hidden.float() if residual is None else residual + hidden.float()
        return self.mixer(self.norm(residual)), residual


class PatchEmbed(nn.Module):
    """Conv patchify to (b, M, dim), patches in row-major order."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)
        self.grid = img_size // patch_size

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels).flatten(2).transpose(1, 2)


# -- the model ---------------------------------------------------------------------------------


class VisionMamba(ReferenceModel):
    """Vim with the class token in the middle of the sequence and absolute position embeddings.

    Args:
        img_size: square input size (position embeddings are fixed to its grid).
        patch_size: patch-embedding kernel and stride (the "+" checkpoints' stride 8 is not
            supported).
        embed_dim, depth: width and number of blocks (tiny: 192 / 24, small: 384 / 24).
        d_state, expand, d_conv: SSM state size, inner width factor and conv kernel.
        num_classes: ImageNet head width (0: none); the head is kept so the official
            checkpoint loads strictly, and `forward` gives logits.
        scan_chunk: positions per chunk of the vectorised scan (memory vs. steps).
    """

    def __init__(self, *, img_size: int = 224, patch_size: int = 16, embed_dim: int = 192,
                 depth: int = 24, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 in_chans: int = 3, num_classes: int = 1000, eps: float = 1e-5,
                 scan_chunk: int = 32):
        super().__init__()
        self.img_size, self.in_chans = img_size, in_chans
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n_patches = self.patch_embed.grid ** 2
        self.cls_position = n_patches // 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, embed_dim))
        self.layers = nn.ModuleList(
            Block(embed_dim, eps, d_state=d_state, expand=expand, d_conv=d_conv,
                  chunk=scan_chunk) for _ in range(depth))
        self.norm_f = RMSNorm(embed_dim, eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        """The official initialisation (models_mamba.py and Mamba's), so random-weight
        baselines start where training did."""
        proj = self.patch_embed.proj
        nn.init.trunc_normal_(proj.weight, std=math.sqrt(1 / proj.weight[0].numel()))
        nn.init.zeros_(proj.bias)
        for param in (self.cls_token, self.pos_embed):
            nn.init.trunc_normal_(param, std=0.02)
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        for layer in self.layers:
            # GPT-2 style: nn.Linear's default init of out_proj, scaled down by sqrt(depth)
            out = layer.mixer.out_proj.weight
            nn.init.uniform_(out, -1 / math.sqrt(out.shape[1] * depth),
                             1 / math.sqrt(out.shape[1] * depth))
            for direction in (layer.mixer.ssm, layer.mixer.ssm_b):
                _init_dt(direction.dt_proj)

    # -- forward ---------------------------------------------------------------------------

    def tokens_in(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the class token inserted in the middle, plus position embeddings."""
        if pixels.ndim != 4 or pixels.shape[1:] != (self.in_chans, self.img_size,
                                                    self.img_size):
            raise VitbenchError(f"Vision Mamba expects pixels of shape (B, {self.in_chans}, "
                                f"{self.img_size}, {self.img_size}), got {tuple(pixels.shape)}")
        x = self.patch_embed(pixels)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        mid = self.cls_position
        return torch.cat([x[:, :mid], cls, x[:, mid:]], dim=1) + self.pos_embed

    def forward_sequence(self, pixels: torch.Tensor, blocks: tuple[int, ...] = ()
                         ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The final normed sequence (b, M + 1, dim), and the normed stream after each block
        in `blocks` (non-negative indices): rms_f(residual + hidden), as the head would see
        it if the model ended there."""
        hidden, residual, kept = self.tokens_in(pixels), None, {}
        for i, layer in enumerate(self.layers):
            hidden, residual = layer(hidden, residual)
            if i in blocks:
                kept[i] = self.norm_f(residual + hidden.float())
        return self.norm_f(residual + hidden.float()), kept

    def split(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class token (b, dim), patch tokens (b, M, dim)) of a normed sequence."""
        mid = self.cls_position
        return sequence[:, mid], torch.cat([sequence[:, :mid], sequence[:, mid + 1:]], dim=1)

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The official forward_features: the class token after the final norm."""
        return self.split(self.forward_sequence(pixels)[0])[0]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet logits, as the official forward."""
        return self.head(self.forward_features(pixels))

    def forward_image(self, pixels: torch.Tensor, layers: tuple[int, ...] = ()) -> ImageFeatures:
        wanted = block_indices("Vision Mamba", len(self.layers), layers)
        sequence, kept = self.forward_sequence(pixels, tuple(wanted))
        pooled, tokens = self.split(sequence)
        outputs = tuple(LayerOutput(i, *self.split(kept[i % len(self.layers)])) for i in layers)
        return ImageFeatures(pooled=pooled, tokens=tokens, layers=outputs)

    # -- weights ---------------------------------------------------------------------------

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official keys -> this module's: each direction's flat mixer parameters go to
        `mixer.ssm` (forward) or `mixer.ssm_b` (backward). Keys already in this layout, and
        all others (patch_embed, cls_token, pos_embed, norms, in/out_proj, head), pass through.
        """
        return {_convert_key(key): value for key, value in state.items()}


_DIRECTIONAL = re.compile(r"^(.*\.mixer)\.(conv1d|x_proj|dt_proj)(_b)?\.(weight|bias)$")
_DIRECTIONAL_PARAM = re.compile(r"^(.*\.mixer)\.(A_log|A_b_log|D|D_b)$")


def _convert_key(key: str) -> str:
    if match := _DIRECTIONAL.match(key):
        prefix, module, backward, param = match.groups()
        return f"{prefix}.ssm{'_b' if backward else ''}.{module}.{param}"
    if match := _DIRECTIONAL_PARAM.match(key):
        prefix, param = match.groups()
        backward = param in ("A_b_log", "D_b")
        return f"{prefix}.ssm{'_b' if backward else ''}.{'A_log' if param[0] == 'A' else 'D'}"
    return key


def _init_dt(dt_proj: nn.Linear, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
    """Mamba's dt initialisation: softplus(bias) log-uniform in [dt_min, dt_max]."""
    rank = dt_proj.weight.shape[1]
    nn.init.uniform_(dt_proj.weight, -rank ** -0.5, rank ** -0.5)
    log_dt = torch.rand(dt_proj.bias.shape) * (math.log(dt_max) - math.log(dt_min))
    dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=1e-4)
    with torch.no_grad():
        dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus
