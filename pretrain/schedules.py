"""Per-step schedules: learning rate (linear warmup, then cosine), weight decay, EMA momentum.

Each is a pure function of the step, so a resumed run recomputes exactly the value the
uninterrupted run used, with no schedule state beyond the step counter.
"""

from __future__ import annotations

import math


def cosine(step: int, total: int, start: float, end: float) -> float:
    """Half-cosine from `start` at step 0 to `end` at step `total` (held there after)."""
    if total <= 0:
        return end
    progress = min(max(step, 0), total) / total
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(step: int, total: int, base: float, warmup: int = 0,
                  final: float = 0.0) -> float:
    """Learning rate: linear ramp to `base` over `warmup` steps, then cosine down to `final`.

    The ramp is `base * (step + 1) / warmup`, so step 0 already trains (timm/DeiT start the
    ramp at a small non-zero value for the same reason) and step `warmup - 1` reaches `base`.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    return cosine(step - warmup, total - warmup, base, final)


def staged_warmup_cosine(step: int, starts: tuple[int, ...], total: int, base: float,
                         warmup: int = 0, final: float = 0.0) -> float:
    """`warmup_cosine` restarted at each of `starts` (the first is 0): one schedule per stage,
    as when the stages are separate pretraining runs (VLMo's image, text, image-text)."""
    begin = max(s for s in starts if s <= step)
    end = min((s for s in starts if s > step), default=total)
    return warmup_cosine(step - begin, end - begin, base, warmup, final)


def weight_decay(step: int, total: int, start: float, end: float | None = None) -> float:
    """Weight decay: constant, or a cosine from `start` to `end` (DINO: 0.04 -> 0.4)."""
    return start if end is None else cosine(step, total, start, end)


def ema_momentum(step: int, total: int, base: float = 0.996, final: float = 1.0) -> float:
    """EMA teacher momentum, BYOL/DINO style: 1 - (1 - base) * (cos(pi * step / total) + 1) / 2,
    i.e. a cosine from `base` up to `final` (1: the teacher freezes at the end)."""
    return cosine(step, total, base, final)
