"""Masked image modelling objectives (MAE, BEiT, BEiT v2, EVA, EVA-02): fast checks of each
against a computation written out here, a 2-step smoke run each, and (slow) learns tests."""


import pytest
import torch
from learns_harness import check_learns
from torch.nn import functional as F

import vitbench
from vitbench.pretrain.masking import random_mask
from vitbench.pretrain.objectives import get_objective
from vitbench.pretrain.objectives.beit import Beit
from vitbench.pretrain.objectives.beitv2 import BeitV2
from vitbench.pretrain.objectives.eva import Eva, Eva02
from vitbench.pretrain.objectives.mae import Mae
from vitbench.pretrain.trainer import TrainConfig, train

PATCH, GRID = 4, 8
MAE_MARGIN = 0.08  # measured 0.439 -> 0.578 (300 steps, batch 128)


def make(cls, model="vit_pico", **overrides):
    torch.manual_seed(0)
    params = cls.Params(**overrides)
    return cls(vitbench.load(model, pretrained=False), params)


def patch_pixels(images, b, n):
    """Patch n (row-major) of image b as MAE orders it: (row, column, channel) flattened."""
    i, j = divmod(n, GRID)
    return images[b, :, PATCH * i:PATCH * (i + 1), PATCH * j:PATCH * (j + 1)].permute(1, 2, 0)


def scramble_masked(images, mask):
    """New pixels in every masked patch, the visible ones untouched."""
    out = images.clone()
    for b, n in mask.nonzero().tolist():
        i, j = divmod(n, GRID)
        out[b, :, PATCH * i:PATCH * (i + 1), PATCH * j:PATCH * (j + 1)] = torch.randn(3, 4, 4)
    return out


def test_mae_encoder_sees_visible_patches_only_and_loss_is_normalised_pixel_mse():
    mae = make(Mae)
    images = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, GRID * GRID)
    assert (mask.sum(1) == 48).all()  # 75% of 64
    seen = []
    mae.backbone.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    pred = mae.predict(images, mask)
    assert seen[0] == (2, 1 + 16, 64)  # the class token and the 16 visible patches
    assert torch.allclose(mae.predict(scramble_masked(images, mask), mask), pred, atol=1e-5)

    mae.draw_mask = lambda batch, device: mask
    loss = mae({"image": images}).loss
    errors = []
    for b, n in mask.nonzero().tolist():
        target = patch_pixels(images, b, n).reshape(-1)
        target = (target - target.mean()) / (target.var() + 1e-6).sqrt()
        errors.append(((pred[b, n] - target) ** 2).mean())
    assert torch.allclose(loss, torch.stack(errors).mean(), atol=1e-5)


def test_beit_trains_the_tokenizer_first_then_predicts_its_codes_at_masked_patches():
    beit = make(Beit, tokenizer_fraction=0.5, codebook_size=32)
    images = torch.randn(4, 3, 32, 32)
    beit({"image": images}).loss.backward()  # phase 1: only the dVAE learns
    assert all(p.grad is None for p in beit.backbone.parameters())
    assert all(p.grad is not None for p in beit.tokenizer.parameters())
    beit.after_step(0, 4)
    assert not bool(beit.tokenizer_done)
    beit.after_step(1, 4)  # 2 of 4 steps done = half the run
    assert bool(beit.tokenizer_done)

    mask = beit.draw_mask((GRID, GRID), 4, images.device)
    assert 0.25 <= mask.float().mean() <= 0.41  # ~40% (26 of 64) blockwise, never above
    beit.draw_mask = lambda grid, batch, device: mask
    beit.zero_grad()
    loss = beit({"image": images}).loss
    loss.backward()
    assert all(p.grad is None for p in beit.tokenizer.parameters())
    logits = beit.predict(images, mask)
    ids = beit.tokenizer.encoder(images).argmax(1).flatten(1)  # the dVAE's codes, by hand
    log_p = F.log_softmax(logits, -1)
    expected = -torch.stack([log_p[b, n, ids[b, n]] for b, n in mask.nonzero().tolist()])
    assert torch.allclose(loss, expected.mean(), atol=1e-5)
    # the student never sees what is under the mask token
    assert torch.allclose(beit.predict(scramble_masked(images, mask), mask), logits, atol=1e-5)


def test_beitv2_vq_picks_the_nearest_cosine_code_and_never_trains_the_teacher():
    v2 = make(BeitV2, codebook_size=16)
    images = torch.randn(3, 3, 32, 32)
    v2({"image": images}).loss.backward()  # phase 1: VQ-KD distils the teacher
    assert all(p.grad is None for p in v2.teacher.parameters())
    assert v2.tokenizer.stem.weight.grad is not None  # straight-through reaches the encoder
    z = v2.tokenizer.encode(images)
    ids, _ = v2.tokenizer.quantise(z)
    book = v2.tokenizer.codebook.detach()
    for b, n in [(0, 0), (1, 17), (2, 63)]:
        sims = [F.cosine_similarity(z[b, n], book[k], dim=0) for k in range(16)]
        assert ids[b, n] == int(torch.stack(sims).argmax())


def test_eva_loss_is_negative_cosine_to_the_teacher_at_masked_patches():
    eva = make(Eva)
    images = torch.randn(2, 3, 32, 32)
    mask = eva.draw_mask((GRID, GRID), 2, images.device)
    eva.draw_mask = lambda grid, batch, device: mask
    loss = eva({"image": images}).loss
    loss.backward()
    assert all(p.grad is None for p in eva.teacher.parameters())
    assert eva.mask_token.grad is not None
    pred = eva.predict(images, mask)
    with torch.no_grad():
        target = eva.teacher._encoder._forward(images).tokens  # same normalisation (HALF)
    cos = [F.cosine_similarity(pred[b, n], target[b, n], dim=0)
           for b, n in mask.nonzero().tolist()]
    assert torch.allclose(loss, -torch.stack(cos).mean(), atol=1e-5)


def test_eva02_rope_student_ignores_masked_content():
    eva02 = make(Eva02, model="eva02_pico")
    images = torch.randn(2, 3, 32, 32)
    mask = eva02.draw_mask((GRID, GRID), 2, images.device)
    pred = eva02.predict(images, mask)
    assert pred.shape == (2, 64, eva02.teacher.width)
    assert torch.allclose(eva02.predict(scramble_masked(images, mask), mask), pred, atol=1e-5)
    assert not torch.allclose(eva02.predict(images, ~mask), pred, atol=1e-3)


@pytest.mark.parametrize("name,model", [("mae", "vit_pico"), ("beit", "vit_pico"),
                                        ("beitv2", "vit_pico"), ("eva", "vit_pico"),
                                        ("eva02", "eva02_pico")])
def test_two_step_run_loads(tmp_path, name, model):
    assert get_objective(name).name == name
    out = train(TrainConfig(name, model, data="digits", steps=2, batch_size=8,
                            out=str(tmp_path / "x")))
    encoder = vitbench.load(str(out))
    assert encoder._forward(torch.zeros(1, 3, 32, 32)).tokens.shape == (1, 64, 64)


@pytest.mark.slow
def test_mae_learns(tmp_path):
    result = check_learns(tmp_path, "mae", steps=300, batch_size=128, lr=1.5e-3,
                          warmup_steps=20)
    assert result.knn_trained > result.knn_random + MAE_MARGIN


@pytest.mark.slow
@pytest.mark.parametrize("name,model", [("eva", "vit_pico"), ("eva02", "eva02_pico")])
def test_eva_learns_from_the_clip_teacher(tmp_path, pico_clip_run, name, model):
    # teacher: the default suite's CLIP run (kNN 0.822). Measured at one thread on a loaded
    # machine: eva 0.439 -> 0.670 (117 s), eva02 on eva02_pico 0.367 -> 0.737 (146 s). With
    # a weaker 150-step teacher (kNN 0.487) and lr 1.5e-3 eva did not learn (0.409).
    result = check_learns(tmp_path, name, model=model, steps=300, batch_size=64, lr=3e-3,
                          warmup_steps=20, overrides={"teacher": pico_clip_run})
    assert result.knn_trained > result.knn_random + 0.1


@pytest.mark.slow
def test_beit_learns(tmp_path):
    # 16 px (a 4x4 grid of vit_pico's 4-px patches) as for the fusion objectives: the dVAE's
    # codes of the 8x8 digits are then few and stable. Measured at one thread: 0.389 -> 0.489
    # after 300 steps (48 s), 0.522 after 600 (94 s); at 32 px and lr 1.5e-3 it did not learn.
    result = check_learns(tmp_path, "beit", steps=600, batch_size=128, lr=2e-3,
                          warmup_steps=20, resolution=16)
    assert result.knn_trained > result.knn_random + 0.08


@pytest.mark.slow
def test_beitv2_learns_from_the_clip_teacher(tmp_path, pico_clip_run):
    # VQ-KD of the default suite's CLIP run, 16 px, a 64-code book trained for half the run.
    # Measured at one thread: 0.389 -> 0.502 (600 steps, 132 s); with the paper-like 256
    # codes and a 30% tokenizer phase 0.404 (300 steps), at 32 px 0.452.
    result = check_learns(tmp_path, "beitv2", steps=600, batch_size=128, lr=3e-3,
                          warmup_steps=20, resolution=16,
                          overrides={"teacher": pico_clip_run, "codebook_size": 64,
                                     "tokenizer_fraction": 0.5})
    assert result.knn_trained > result.knn_random + 0.08
