"""Self-distillation losses of DINO, iBOT and DINOv2.

The student matches the teacher's sharpened distribution over K prototypes. Collapse is avoided
on the teacher side, either by centring (DINO: subtract an EMA of the batch mean, see
:class:`DinoCenter`) or by Sinkhorn-Knopp normalisation (DINOv2's alternative), plus a low
teacher temperature. DINOv2 adds the KoLeo regulariser to spread the class tokens.

Defaults (DINO arXiv:2104.14294 sec. 3 and appendix; DINOv2 arXiv:2304.07193 sec. 4 and its
``ssl_default_config.yaml``): student temperature 0.1, centre momentum 0.9, teacher temperature
warmed up linearly from 0.04 to 0.07 over the first 30 epochs, 3 Sinkhorn-Knopp iterations,
KoLeo weight 0.1, iBOT weight 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vitbench.pretrain.losses._precision import upcast

STUDENT_TEMP = 0.1
CENTER_MOMENTUM = 0.9
TEACHER_TEMP_START = 0.04
TEACHER_TEMP_END = 0.07
KOLEO_WEIGHT = 0.1


def _ddp() -> bool:
    return dist.is_available() and dist.is_initialized()


def teacher_temperature(
    step: int, warmup_steps: int, start: float = TEACHER_TEMP_START, end: float = TEACHER_TEMP_END
) -> float:
    """DINO's teacher temperature: linear from ``start`` to ``end``, then constant.

    As DINO's ``np.linspace(start, end, warmup)`` schedule (``end`` reached at step
    ``warmup_steps - 1``); DINO warms up over 30 epochs because a high temperature early makes
    training unstable. The trainer passes the value to :meth:`DinoCenter.teacher_probs`.
    """
    if warmup_steps <= 1 or step >= warmup_steps - 1:
        return end
    return start + (end - start) * max(step, 0) / (warmup_steps - 1)


class DinoCenter(nn.Module):
    """The teacher centre of DINO/iBOT: an EMA of the mean teacher logits.

    Works for class tokens ``(B, K)`` and patch tokens ``(B, N, K)`` alike: the centre is the
    mean over every leading dimension (all-reduced under DDP), as DINO and iBOT compute it.
    """

    center: Tensor

    def __init__(self, dim: int, momentum: float = CENTER_MOMENTUM) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(dim))

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: Tensor, teacher_temp: float) -> Tensor:
        """Centre then sharpen: ``softmax((t - c) / teacher_temp)``."""
        return F.softmax((upcast(teacher_logits) - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update(self, teacher_logits: Tensor) -> None:
        flat = upcast(teacher_logits.detach()).reshape(-1, teacher_logits.shape[-1])
        total = torch.cat([flat.sum(0), flat.new_tensor([flat.shape[0]])])
        if _ddp():
            dist.all_reduce(total)
        batch_center = total[:-1] / total[-1]
        self.center.mul_(self.momentum).add_(batch_center, alpha=1 - self.momentum)

    @torch.no_grad()
    def forward(self, teacher_logits: Tensor, teacher_temp: float) -> Tensor:
        """Teacher probabilities with the current centre, then the EMA update (DINO's order)."""
        probs = self.teacher_probs(teacher_logits, teacher_temp)
        self.update(teacher_logits)
        return probs


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
    """DINOv2's centring by Sinkhorn-Knopp (from SwAV): balanced soft assignments.

    Alternately rescales the prototypes (each gets total mass 1/K) and the samples (each 1/B)
    of ``exp(t / teacher_temp)``, then returns per-sample distributions (rows sum to 1). Under
    DDP the sums run over all ranks, so the balance is global.

    Args:
        teacher_logits: ``(B, K)``; for iBOT, the flattened masked patch tokens.
    """
    logits = upcast(teacher_logits) / teacher_temp
    # a global shift cancels in the first normalisation; it keeps exp from overflowing
    top = logits.max().detach().clone()
    if _ddp():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(logits - top).T  # (K, B), the paper's notation
    k = q.shape[0]
    n = torch.tensor(float(q.shape[1]), device=q.device)
    total = q.sum()
    if _ddp():
        dist.all_reduce(n)
        dist.all_reduce(total)
    q = q / total
    # an all-zero row or column (exp underflow at extreme temperatures) stays zero, not NaN
    tiny = torch.finfo(q.dtype).tiny
    for _ in range(n_iterations):
        rows = q.sum(dim=1, keepdim=True)
        if _ddp():
            dist.all_reduce(rows)
        q = q / rows.clamp(min=tiny) / k
        q = q / q.sum(dim=0, keepdim=True).clamp(min=tiny) / n
    return (q * n).T


def _cross_entropy(teacher_probs: Tensor, student_logits: Tensor, student_temp: float) -> Tensor:
    """Per-row ``-sum_k p_t log p_s`` with the student sharpened by its temperature."""
    return -(teacher_probs * F.log_softmax(upcast(student_logits) / student_temp, -1)).sum(-1)


def dino_loss(
    student_logits: Sequence[Tensor],
    teacher_probs: Sequence[Tensor],
    student_temp: float = STUDENT_TEMP,
) -> Tensor:
    """DINO's multi-crop loss (arXiv:2104.14294, eq. 3).

    Args:
        student_logits: one ``(B, K)`` tensor per crop, global crops first, in the same order
            as ``teacher_probs``.
        teacher_probs: one ``(B, K)`` tensor per global crop (from :class:`DinoCenter` or
            :func:`sinkhorn_knopp`; treated as constants).

    Returns:
        The cross-entropy averaged over every (teacher crop, student crop) pair except a crop
        with itself, as DINO's official ``DINOLoss``.
    """
    total: Tensor | float = 0.0
    terms = 0
    for it, probs in enumerate(teacher_probs):
        for iv, logits in enumerate(student_logits):
            if iv == it:
                continue
            total = total + _cross_entropy(probs.detach(), logits, student_temp).mean()
            terms += 1
    return torch.as_tensor(total) / terms


def ibot_patch_loss(
    student_masked_logits: Tensor,
    teacher_masked_probs: Tensor,
    mask: Tensor,
    student_temp: float = STUDENT_TEMP,
) -> Tensor:
    """iBOT's masked patch self-distillation (arXiv:2111.07832, eq. 2), in DINOv2's
    ``forward_masked`` form: only the masked patches go through the heads, which at 224 px with
    65536 prototypes is the difference between fitting in GPU memory and not.

    The student saw the masked image, the teacher the full one; the cross-entropy over the
    masked patches is averaged per image, then over the B images (an image without masked
    patches contributes 0).

    Args:
        student_masked_logits: ``(M, K)``, the rows ``logits[mask]`` of the student's patches.
        teacher_masked_probs: ``(M, K)`` centred, sharpened teacher distributions, same rows.
        mask: ``(B, N)`` bool, True where the student's patch was masked (M of them).
    """
    ce = _cross_entropy(teacher_masked_probs.detach(), student_masked_logits, student_temp)
    per_image = mask.sum(-1, keepdim=True).clamp(min=1).expand_as(mask)[mask]
    return (ce / per_image).sum() / len(mask)


def koleo_loss(x: Tensor, eps: float = 1e-8) -> Tensor:
    """KoLeo regulariser (Sablayrolles et al. arXiv:1806.03198), DINOv2 weight 0.1.

    ``-mean_i log(min_{j != i} ||x_i - x_j||)`` on L2-normalised features: pushes each
    feature away from its nearest neighbour, spreading the batch uniformly. DINOv2 applies it
    to the student's class tokens (before the head), separately for each global crop.
    """
    x = F.normalize(upcast(x), dim=-1, eps=eps)
    with torch.no_grad():  # the neighbour index is a choice, not differentiated
        dots = x @ x.T
        dots.fill_diagonal_(-2.0)  # below any cosine, so a point is never its own neighbour
        nearest = dots.argmax(dim=1)
    # eps inside the norm (as nn.PairwiseDistance): finite gradient for duplicate points
    dist_nn = (x - x[nearest] + eps).norm(dim=-1)
    return -torch.log(dist_nn + eps).mean()
