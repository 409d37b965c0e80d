"""Pretraining losses against independent references: formulas written out as loops here,
open_clip's ClipLoss / SigLipLoss / CoCaLoss, and the structure of DINO's / DINOv2's official
loss modules. Forward values and gradients are both compared."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitbench.pretrain.losses import (
    DinoCenter,
    LogitScale,
    beit_mim_loss,
    clip_loss,
    coca_loss,
    dino_loss,
    eva_feature_loss,
    ibot_patch_loss,
    itc_distill_loss,
    itm_loss,
    koleo_loss,
    mae_loss,
    momentum_distill_targets,
    patchify,
    sample_hard_negatives,
    siglip_loss,
    sinkhorn_knopp,
    teacher_temperature,
)


@pytest.fixture(autouse=True)
def _float64():
    """The references are loops: float64 keeps rounding out of the comparison. Set per test
    (not at import) so that other test modules never see the changed default."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _open_clip_loss_module():
    """open_clip/loss.py loaded on its own: importing the open_clip package costs ~10 s."""
    spec = importlib.util.find_spec("open_clip")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    module_spec = importlib.util.spec_from_file_location("_open_clip_loss", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


OC = _open_clip_loss_module()


def _leaf(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_(True)


def _grads(fn, *tensors):
    for t in tensors:
        t.grad = None
    out = fn()
    out.backward()
    return out.detach().clone(), [t.grad.clone() for t in tensors]


def _assert_same(fn_a, fn_b, *tensors, atol=1e-9):
    value_a, grads_a = _grads(fn_a, *tensors)
    value_b, grads_b = _grads(fn_b, *tensors)
    torch.testing.assert_close(value_a, value_b, atol=atol, rtol=1e-7)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, atol=atol, rtol=1e-7)


def _log_softmax_row(row: list) -> list:
    """log softmax of a list of scalar tensors, written out."""
    top = max(float(v.detach()) for v in row)
    lse = top + torch.log(sum(torch.exp(v - top) for v in row))
    return [v - lse for v in row]


# ---------------------------------------------------------------- CLIP / SigLIP / CoCa


def _unit(v):
    return v / torch.sqrt((v * v).sum())


def _clip_loop(img, txt, scale):
    n = len(img)
    a = [_unit(img[i]) for i in range(n)]
    b = [_unit(txt[i]) for i in range(n)]
    sim = [[scale * (a[i] * b[j]).sum() for j in range(n)] for i in range(n)]
    i2t = sum(-_log_softmax_row(sim[i])[i] for i in range(n)) / n
    t2i = sum(-_log_softmax_row([sim[j][i] for j in range(n)])[i] for i in range(n)) / n
    return (i2t + t2i) / 2


def _siglip_loop(img, txt, scale, bias):
    n = len(img)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = scale * (_unit(img[i]) * _unit(txt[j])).sum() + bias
            total = total + torch.log1p(torch.exp(-z * logit))  # -log sigmoid(z * logit)
    return total / n


def test_clip_loss_matches_loop_formula_and_open_clip():
    img, txt, scale = _leaf(6, 8, seed=1), _leaf(6, 8, seed=2), torch.tensor(9.0).requires_grad_()
    ours = lambda: clip_loss(img, txt, scale)  # noqa: E731
    _assert_same(ours, lambda: _clip_loop(img, txt, scale), img, txt, scale)
    peer = OC.ClipLoss()
    _assert_same(
        ours,
        lambda: peer(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), scale),
        img, txt, scale,
    )


def test_siglip_loss_matches_loop_formula_and_open_clip():
    img, txt = _leaf(5, 8, seed=3), _leaf(5, 8, seed=4)
    scale, bias = torch.tensor(10.0).requires_grad_(), torch.tensor(-10.0).requires_grad_()
    ours = lambda: siglip_loss(img, txt, scale, bias)  # noqa: E731
    _assert_same(ours, lambda: _siglip_loop(img, txt, scale, bias), img, txt, scale, bias)
    peer = OC.SigLipLoss()
    _assert_same(
        ours,
        lambda: peer(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), scale, bias),
        img, txt, scale, bias,
    )


def test_coca_loss_matches_open_clip_and_loop():
    img, txt, scale = _leaf(4, 8, seed=5), _leaf(4, 8, seed=6), torch.tensor(5.0).requires_grad_()
    logits = _leaf(4, 7, 11, seed=7)
    labels = torch.randint(1, 11, (4, 7), generator=torch.Generator().manual_seed(0))
    labels[:, 5:] = 0  # padding
    labels[0, 3:] = 0

    def ours():
        clip_term, cap_term = coca_loss(img, txt, logits, labels, scale)
        return clip_term + cap_term

    def peer_sum():
        peer = OC.CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0, pad_id=0)
        c, p = peer(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), logits, labels, scale)
        return c + p

    def loop():
        terms = [
            -_log_softmax_row(list(logits[i, t]))[int(labels[i, t])]
            for i in range(4) for t in range(7) if int(labels[i, t]) != 0
        ]
        return _clip_loop(img, txt, scale) + 2.0 * sum(terms) / len(terms)

    _assert_same(ours, peer_sum, img, txt, scale, logits)
    _assert_same(ours, loop, img, txt, scale, logits)


def test_logit_scale_inits_and_clamp():
    scale, bias = LogitScale.clip()()
    assert bias is None and math.isclose(scale.item(), 1 / 0.07, rel_tol=1e-6)
    module = LogitScale.siglip()
    scale, bias = module()
    assert math.isclose(module.log_scale.item(), math.log(10.0), rel_tol=1e-6)
    assert math.isclose(scale.item(), 10.0, rel_tol=1e-6) and bias.item() == -10.0
    capped = LogitScale(500.0)
    scale, _ = capped()
    scale.backward()
    assert math.isclose(scale.item(), 100.0, rel_tol=1e-6) and capped.log_scale.grad.item() == 0


# ---------------------------------------------------------------- DINO / iBOT / DINOv2


class _OfficialDinoLoss:
    """DINO's ``DINOLoss.forward`` (main_dino.py), single process: concatenated crops,
    ``chunk``, skip same view, then the centre EMA."""

    def __init__(self, out_dim, ncrops, student_temp=0.1, center_momentum=0.9):
        self.center = torch.zeros(1, out_dim)
        self.ncrops, self.student_temp, self.center_momentum = ncrops, student_temp, center_momentum

    def __call__(self, student_output, teacher_output, temp):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(2)
        total, n_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_terms += 1
        batch_center = teacher_output.sum(0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (
            1 - self.center_momentum
        )
        return total / n_terms


def test_dino_loss_and_center_match_official_structure():
    b, k, ncrops = 3, 16, 4
    official = _OfficialDinoLoss(k, ncrops)
    center = DinoCenter(k)
    for step in range(3):  # several steps so the centre is non-zero and compared too
        student = _leaf(ncrops * b, k, seed=10 + step)
        teacher = torch.randn(2 * b, k, generator=torch.Generator().manual_seed(20 + step)) * 3
        temp = teacher_temperature(step, warmup_steps=3)

        def ours(student=student, teacher=teacher, temp=temp):
            probs = center(teacher, temp)  # centre with the old value, then update
            return dino_loss(list(student.chunk(ncrops)), list(probs.chunk(2)))

        value, (grad,) = _grads(ours, student)
        ref_value, (ref_grad,) = _grads(
            lambda s=student, t=teacher, tt=temp: official(s, t, tt), student
        )
        torch.testing.assert_close(value, ref_value.to(value.dtype))
        torch.testing.assert_close(grad, ref_grad)
        torch.testing.assert_close(center.center, official.center[0])


def test_dino_loss_loop_formula():
    b, k = 2, 5
    students = [_leaf(b, k, seed=30 + i) for i in range(3)]
    teachers = [F.softmax(torch.randn(b, k, generator=torch.Generator().manual_seed(i)), -1)
                for i in range(2)]

    def loop():
        total, n = 0.0, 0
        for t_idx, t in enumerate(teachers):
            for s_idx, s in enumerate(students):
                if s_idx == t_idx:
                    continue
                per_row = [
                    -sum(t[r, c] * _log_softmax_row(list(s[r] / 0.1))[c] for c in range(k))
                    for r in range(b)
                ]
                total, n = total + sum(per_row) / b, n + 1
        return total / n

    _assert_same(lambda: dino_loss(students, teachers, 0.1), loop, *students)


def test_teacher_temperature_is_dinos_linspace_schedule():
    warmup, total = 30, 40
    official = np.concatenate((np.linspace(0.04, 0.07, warmup), np.ones(total - warmup) * 0.07))
    ours = [teacher_temperature(e, warmup) for e in range(total)]
    np.testing.assert_allclose(ours, official, rtol=1e-12)


def test_ibot_patch_loss_matches_loop_and_dinov2_forward_masked():
    b, n, k = 3, 5, 6
    student = _leaf(b, n, k, seed=40)
    teacher = F.softmax(torch.randn(b, n, k, generator=torch.Generator().manual_seed(1)), -1)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)

    def loop():
        per_image = []
        for i in range(b):
            terms = [
                -sum(teacher[i, j, c] * _log_softmax_row(list(student[i, j] / 0.1))[c]
                     for c in range(k))
                for j in range(n) if mask[i, j]
            ]
            per_image.append(sum(terms) / len(terms) if terms else torch.tensor(0.0))
        return sum(per_image) / b

    def dinov2_forward_masked():  # iBOTPatchLoss.forward_masked on the gathered masked tokens
        t, s = teacher[mask], student[mask]
        loss = torch.sum(t * F.log_softmax(s / 0.1, dim=-1), dim=-1)
        weights = (1 / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(mask)[mask]
        return -(loss * weights).sum() / b

    ours = lambda: ibot_patch_loss(student[mask], teacher[mask], mask)  # noqa: E731
    _assert_same(ours, loop, student)
    _assert_same(ours, dinov2_forward_masked, student)


def test_patch_center_is_mean_over_images_of_token_means():
    center = DinoCenter(4, momentum=0.5)
    tokens = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(2))
    center.update(tokens)
    # iBOT/DINOv2: sum over images of the per-image token mean, divided by the batch size
    expected = 0.5 * torch.sum(tokens.mean(1), dim=0) / 3
    torch.testing.assert_close(center.center, expected)


def test_koleo_loss_matches_brute_force_nearest_neighbour():
    x = _leaf(7, 4, seed=50)

    def loop():
        unit = [_unit(x[i]) for i in range(len(x))]
        total = 0.0
        for i in range(len(x)):
            dists = [torch.sqrt(((unit[i] - unit[j]) ** 2).sum()) for j in range(len(x)) if j != i]
            total = total - torch.log(min(dists, key=lambda d: float(d.detach())))
        return total / len(x)

    _assert_same(lambda: koleo_loss(x), loop, x, atol=1e-6)


def test_koleo_loss_finite_on_duplicates():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    x = torch.cat([x, x[:1]]).requires_grad_()
    loss = koleo_loss(x)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_sinkhorn_knopp_matches_numpy_paper_algorithm():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(4))
    temp = 0.5
    q = np.exp(logits.numpy() / temp).T  # K x B as in SwAV / DINOv2
    big_k, big_b = q.shape
    q /= q.sum()
    for _ in range(3):
        q /= q.sum(axis=1, keepdims=True) * big_k  # each prototype gets mass 1/K
        q /= q.sum(axis=0, keepdims=True) * big_b  # each sample gets mass 1/B
    expected = (q * big_b).T
    ours = sinkhorn_knopp(logits, temp)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(ours.sum(1).numpy(), 1.0, rtol=1e-10)
    # balance improves with iterations: column (prototype) mass approaches B / K
    many = sinkhorn_knopp(logits, temp, n_iterations=200)
    np.testing.assert_allclose(many.sum(0).numpy(), big_b / big_k, rtol=1e-6)


# ---------------------------------------------------------------- MAE / BEiT / EVA


def test_patchify_matches_index_loop():
    img = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(5))
    p = 4
    out = patchify(img, p)
    for b in range(2):
        for gy in range(2):
            for gx in range(3):
                for py in range(p):
                    for px in range(p):
                        for c in range(3):
                            got = out[b, gy * 3 + gx, (py * p + px) * 3 + c]
                            assert got == img[b, c, gy * p + py, gx * p + px]


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_matches_loop(norm_pix):
    b, n, d = 2, 5, 6
    pred = _leaf(b, n, d, seed=60)
    target = torch.randn(b, n, d, generator=torch.Generator().manual_seed(6))
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)

    def loop():
        terms = []
        for i in range(b):
            for j in range(n):
                if not mask[i, j]:
                    continue
                t = target[i, j].numpy()
                if norm_pix:
                    t = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-6)
                terms.append(((pred[i, j] - torch.from_numpy(t)) ** 2).mean())
        return sum(terms) / len(terms)

    _assert_same(lambda: mae_loss(pred, target, mask, norm_pix=norm_pix), loop, pred)


def test_beit_mim_loss_matches_loop():
    b, n, v = 2, 6, 9
    logits = _leaf(b, n, v, seed=70)
    ids = torch.randint(v, (b, n), generator=torch.Generator().manual_seed(7))
    mask = torch.rand(b, n, generator=torch.Generator().manual_seed(8)) < 0.5
    mask[0, 0] = True

    def loop():
        terms = [-_log_softmax_row(list(logits[i, j]))[int(ids[i, j])]
                 for i in range(b) for j in range(n) if mask[i, j]]
        return sum(terms) / len(terms)

    _assert_same(lambda: beit_mim_loss(logits, ids, mask), loop, logits)


def test_eva_feature_loss_matches_loop_and_ignores_teacher_grad():
    b, n, d = 2, 4, 5
    pred, teacher = _leaf(b, n, d, seed=80), _leaf(b, n, d, seed=81)
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)

    def loop():
        terms = [-(_unit(pred[i, j]) * _unit(teacher[i, j].detach())).sum()
                 for i in range(b) for j in range(n) if mask[i, j]]
        return sum(terms) / len(terms)

    _assert_same(lambda: eva_feature_loss(pred, teacher, mask), loop, pred)
    eva_feature_loss(pred, teacher, mask).backward()
    assert teacher.grad is None


# ---------------------------------------------------------------- ALBEF / BLIP


def test_hard_negatives_follow_similarity_and_skip_positive():
    sim = torch.tensor([[5.0, 4.0, 0.0, -2.0], [1.0, 3.0, 2.0, 0.0],
                        [0.0, 0.0, 1.0, 0.0], [2.0, 1.0, 3.0, 9.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_hard_negatives(sim, sim.T, g)[0] for _ in range(500)])
    weights = F.softmax(sim, dim=1) + 1e-4
    weights.fill_diagonal_(0)
    expected = weights / weights.sum(1, keepdim=True)
    for row in range(4):
        freq = torch.bincount(draws[:, row], minlength=4) / len(draws)
        assert freq[row] == 0  # never the positive itself
        torch.testing.assert_close(freq, expected[row], atol=0.06, rtol=0)
    again = sample_hard_negatives(sim, sim.T, torch.Generator().manual_seed(5))
    same = sample_hard_negatives(sim, sim.T, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, s) for a, s in zip(again, same, strict=True))


def test_itm_loss_matches_formula():
    pos, neg = _leaf(3, 2, seed=90), _leaf(6, 2, seed=91)

    def loop():
        terms = [-_log_softmax_row(list(pos[i]))[1] for i in range(3)]
        terms += [-_log_softmax_row(list(neg[i]))[0] for i in range(6)]
        return sum(terms) / len(terms)

    _assert_same(lambda: itm_loss(pos, neg), loop, pos, neg)


def test_momentum_distillation_matches_albef_formula():
    b, m = 3, 5  # m > b: a queue of momentum features after the batch
    sim_i2t, sim_t2i = _leaf(b, m, seed=100), _leaf(b, m, seed=101)
    mom_i2t = torch.randn(b, m, generator=torch.Generator().manual_seed(9))
    mom_t2i = torch.randn(b, m, generator=torch.Generator().manual_seed(10))
    targets = momentum_distill_targets(mom_i2t, 0.4)
    for i in range(b):
        for j in range(m):
            soft = math.exp(mom_i2t[i, j]) / sum(math.exp(v) for v in mom_i2t[i].tolist())
            assert math.isclose(targets[i, j], 0.4 * soft + 0.6 * (i == j), rel_tol=1e-9)

    def loop(alpha):
        def direction(sim, mom):
            total = 0.0
            for i in range(b):
                soft = F.softmax(mom[i], -1)
                target = [alpha * soft[j] + (1 - alpha) * (i == j) for j in range(m)]
                logp = _log_softmax_row(list(sim[i]))
                total = total - sum(target[j] * logp[j] for j in range(m))
            return total / b

        return (direction(sim_i2t, mom_i2t) + direction(sim_t2i, mom_t2i)) / 2

    for alpha in (0.4, 0.0):
        _assert_same(lambda a=alpha: itc_distill_loss(sim_i2t, sim_t2i, mom_i2t, mom_t2i, a),
                     lambda a=alpha: loop(a), sim_i2t, sim_t2i)
    # alpha = 0 is plain InfoNCE against the diagonal
    labels = torch.arange(b)
    plain = (F.cross_entropy(sim_i2t, labels) + F.cross_entropy(sim_t2i, labels)) / 2
    torch.testing.assert_close(itc_distill_loss(sim_i2t, sim_t2i, mom_i2t, mom_t2i, 0.0), plain)


# ---------------------------------------------------------------- mixed precision


def _bf16_cases():
    g = torch.Generator().manual_seed(11)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32)

    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=torch.bool)
    probs = F.softmax(r(2, 4, 6), -1)
    ids = torch.randint(6, (2, 4), generator=g)
    return {
        "clip": (lambda a, b: clip_loss(a, b, 20.0), [r(4, 8), r(4, 8)]),
        "siglip": (lambda a, b: siglip_loss(a, b, 10.0, -10.0), [r(4, 8), r(4, 8)]),
        "dino": (lambda a, b: dino_loss([a, b], [probs[0, :3]]), [r(3, 6), r(3, 6)]),
        "ibot": (lambda a: ibot_patch_loss(a[mask], probs[mask], mask), [r(2, 4, 6)]),
        "koleo": (koleo_loss, [r(6, 5)]),
        "mae": (lambda a, b: mae_loss(a, b, mask), [r(2, 4, 12), r(2, 4, 12)]),
        "beit": (lambda a: beit_mim_loss(a, ids, mask), [r(2, 4, 6)]),
        "eva": (lambda a, b: eva_feature_loss(a, b, mask), [r(2, 4, 5), r(2, 4, 5)]),
    }


@pytest.mark.parametrize("name", list(_bf16_cases()))
def test_bf16_inputs_give_float32_losses(name):
    """Under AMP the heads emit bf16; the losses must compute in float32 (softmax, log, exp)."""
    fn, inputs = _bf16_cases()[name]
    rounded = [t.to(torch.bfloat16) for t in inputs]
    low = fn(*rounded)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, fn(*[t.float() for t in rounded]))


def test_sinkhorn_knopp_stays_finite_at_extreme_temperature():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(12), dtype=torch.float32)
    out = sinkhorn_knopp(logits * 100, 0.04)
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, folder: str) -> None:
    import torch.distributed as dist

    torch.set_default_dtype(torch.float64)  # as the parent's test, for the centre buffer
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank,
                            world_size=world)
    try:
        logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        part = logits[:3] if rank == 0 else logits[3:]  # unequal shares, as masked patches
        center = DinoCenter(5)
        center.update(part)
        torch.save((sinkhorn_knopp(part, 0.3), center.center), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters: ~15 s on two cores
def test_sinkhorn_and_center_under_ddp_equal_one_process_on_the_global_batch(tmp_path):
    """Two gloo ranks with 3 and 4 rows: the balance and the centre are global, so each rank's
    output equals its rows of the one-process result on all 7."""
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, str(tmp_path)), nprocs=2, start_method="spawn"
    )
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(torch.cat([results[0][0], results[1][0]]),
                               sinkhorn_knopp(logits, 0.3))
    single = DinoCenter(5)
    single.update(logits)
    for _, center in results:
        torch.testing.assert_close(center, single.center)
