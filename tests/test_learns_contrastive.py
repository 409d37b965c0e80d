"""SigLIP, FLIP, CoCa and MoDE: fast checks against hand computations, 2-step smoke runs, and
(slow) evidence that each learns on the embedded digits (see learns_harness)."""

import math

import pytest
import torch
from learns_harness import check_learns
from torch.nn import functional as F

import vitbench
from vitbench.data.embedded import digit_captions
from vitbench.pretrain.objectives import get_objective
from vitbench.pretrain.objectives.mode import bag_of_words
from vitbench.pretrain.trainer import TrainConfig, train

CAPTIONS = [digit_captions(i % 10)[i % 3] for i in range(6)]


def make(name: str, **params):
    torch.manual_seed(0)
    cls = get_objective(name)
    return cls(vitbench.load("vit_pico", pretrained=False), cls.Params(**params))


def symmetric_ce(image: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """CLIP's loss written out: -log softmax of the diagonal, both directions."""
    logits = scale * image @ text.T
    n = len(logits)
    rows = -logits.diag() + logits.logsumexp(1)
    cols = -logits.diag() + logits.logsumexp(0)
    return (rows.sum() + cols.sum()) / (2 * n)


@pytest.mark.parametrize("name", ["siglip", "flip", "coca", "mode"])
def test_two_step_run_loads(tmp_path, name):
    out = train(TrainConfig(name, "vit_pico", data="digits", steps=2, batch_size=8,
                            out=str(tmp_path / "x")))
    encoder = vitbench.load(str(out))
    assert encoder.encode_image(torch.zeros(1, 3, 32, 32)).pooled.shape == (1, 64)


def test_siglip_loss_is_the_pairwise_sigmoid_at_init():
    objective = make("siglip").eval()
    batch = {"image": torch.randn(6, 3, 32, 32), "caption": CAPTIONS}
    loss = objective(batch).loss
    with torch.no_grad():
        image, text = objective.embed_image(batch["image"]), objective.embed_text(CAPTIONS)
    logits = 10.0 * image @ text.T - 10.0  # t = exp(log 10), b = -10 (paper init)
    expected = 0.0
    for i in range(6):
        for j in range(6):
            sign = 1.0 if i == j else -1.0
            expected += math.log1p(math.exp(-sign * float(logits[i, j])))
    assert loss.item() == pytest.approx(expected / 6, rel=1e-5)


def test_flip_drops_half_the_patches_then_tunes_unmasked():
    objective = make("flip", mask_ratio=0.5, unmasked_fraction=0.1).train()
    seen = []
    objective.backbone.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    pixels = torch.randn(3, 3, 32, 32)
    objective.features(pixels)
    assert seen[-1].shape == (3, 1 + 32, 64)  # class token + 32 of the 8x8 patches
    # the kept tokens are distinct patches with their own position embeddings
    vit = objective.backbone
    full = vit._pos_embed(vit.patch_embed(pixels))[:, 1:]
    for row in range(3):
        match = (seen[-1][row, 1:, None] - full[row, None]).abs().sum(-1) < 1e-5
        assert (match.sum(1) == 1).all() and match.any(0).sum() == 32
    objective.after_step(89, 100)  # step 90 of 100: the last 10% starts
    assert objective.features(pixels).shape == (3, 64) and seen[-1].shape == (3, 65, 64)
    objective.after_step(80, 100)
    objective.features(pixels)
    assert seen[-1].shape == (3, 33, 64)
    objective.eval()
    assert torch.allclose(objective.features(pixels), objective._encoder._forward(pixels).pooled)


def test_coca_loss_is_contrastive_plus_twice_the_caption_loss():
    objective = make("coca", caption_queries=4).eval()
    pixels = torch.randn(6, 3, 32, 32)
    output = objective({"image": pixels, "caption": CAPTIONS})
    with torch.no_grad():
        image, text = objective.embed_image(pixels), objective.embed_text(CAPTIONS)
        contrastive = symmetric_ce(image, text, 1 / 0.07)
        ids = objective._ids(CAPTIONS)
        _, states = objective.decoder.encode(ids)
        memory = objective.pool_caption(objective._tokens(pixels))
        logits = objective.decoder.decode(states, memory)
        total, count = 0.0, 0
        for row in range(6):
            for t in range(ids.shape[1] - 1):
                if ids[row, t + 1] != 0:  # padding is not a target
                    total -= float(logits[row, t].log_softmax(-1)[ids[row, t + 1]])
                    count += 1
    assert output.metrics["contrastive"].item() == pytest.approx(float(contrastive), rel=1e-4)
    assert output.metrics["caption"].item() == pytest.approx(2 * total / count, rel=1e-4)
    assert output.loss.item() == pytest.approx(float(contrastive) + 2 * total / count, rel=1e-4)


def test_coca_decoder_is_causal():
    objective = make("coca", caption_queries=4).eval()
    memory = torch.randn(2, 4, 64)
    ids = objective._ids(["a scan of a handwritten three", "the number 7"])
    changed = ids.clone()
    changed[:, 3] = 77  # a later word differs: positions 0-2 must not notice
    with torch.no_grad():
        a = objective.decoder.decode(objective.decoder.encode(ids)[1], memory)
        b = objective.decoder.decode(objective.decoder.encode(changed)[1], memory)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-5)
    assert not torch.allclose(a[:, 3], b[:, 3], atol=1e-3)


def test_mode_trains_each_expert_on_its_cluster_and_routes_by_centres():
    objective = make("mode", experts=2).train()
    pixels = torch.randn(6, 3, 32, 32)
    output = objective({"image": pixels, "caption": CAPTIONS})
    assigned = objective.cluster(CAPTIONS).argmax(1)
    # two phrasings of the three cluster apart ("the number 3" vs the "handwritten" ones)
    assert sorted(assigned.bincount(minlength=2).tolist()) == [2, 4]
    with torch.no_grad():
        expected = []
        for e in range(2):
            rows = (assigned == e).nonzero()[:, 0].tolist()
            image = objective._image(e, pixels[rows])
            text = objective._text(e, [CAPTIONS[i] for i in rows])
            expected.append(symmetric_ce(image, text, 1 / 0.07))
    assert output.loss.item() == pytest.approx(float(sum(expected) / 2), rel=1e-4)
    # routing: image . text = sum_e softmax(cos(bag of words, centres) / T)_e cos_e
    objective.eval()
    prompts = ["a handwritten digit four", "the number 4"]
    with torch.no_grad():
        scores = objective.embed_image(pixels) @ objective.embed_text(prompts).T
        bags = bag_of_words(prompts, 256)
        weights = F.softmax(bags @ objective.centres.T / 0.1, dim=1)
        by_hand = sum(weights[:, e] * (objective._image(e, pixels) @ objective._text(e, prompts).T)
                      for e in range(2))
    assert torch.allclose(scores, by_hand, atol=1e-5)
    # the gradient of a cluster's pairs reaches only its expert's towers
    objective.train()
    objective.zero_grad()
    only = [c for c, e in zip(CAPTIONS, assigned.tolist(), strict=True) if e == 0]
    objective({"image": pixels[: len(only)], "caption": only}).loss.backward()
    expert_grad = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
                   for m in (objective.backbone, objective.other_backbones[0])]
    assert expert_grad == [True, False]


# Slow. Measured numbers (random vit_pico kNN on digits: 0.439; times on the shared 2-core
# machine under heavy load from other jobs, about 30x slower than idle) are in each test.
@pytest.mark.slow
def test_siglip_learns(tmp_path):
    # measured: kNN 0.439 -> 0.667, zero-shot 0.469 (chance 0.1), 375 s under load; with the
    # paper's b = -10 (lr 1e-3) only 0.454 / 0.230, with b = -5 at lr 1e-3 0.480 / 0.265
    result = check_learns(tmp_path, "siglip", image_text=True, steps=200, batch_size=128,
                          lr=3e-3, warmup_steps=20, overrides={"init_bias": -5.0})
    assert result.knn_trained > result.knn_random + 0.15
    assert result.zero_shot > 2 * result.chance


@pytest.mark.slow
def test_coca_learns(tmp_path):
    # measured: kNN 0.389 -> 0.557, zero-shot 0.387 (chance 0.1), 244 s with a second job on
    # the other core. At 32 px and lr 1e-3 it did not learn in 150-200 steps (kNN 0.485-0.500,
    # its contrastive loss near log 128 while the captioning loss fell): 16 px digits (a 4x4
    # patch grid, 3x cheaper steps) and lr 2e-3 made the difference, as for ALBEF and BLIP.
    result = check_learns(tmp_path, "coca", image_text=True, steps=200, batch_size=128,
                          lr=2e-3, warmup_steps=20, resolution=16)
    assert result.knn_trained > result.knn_random + 0.1
    assert result.zero_shot > 2 * result.chance


@pytest.mark.slow
def test_flip_learns(tmp_path):
    # measured: kNN 0.439 -> 0.593, zero-shot 0.281 (chance 0.1), 940 s under load
    result = check_learns(tmp_path, "flip", image_text=True, steps=200, batch_size=128,
                          lr=1e-3, warmup_steps=20, overrides={"unmasked_fraction": 0.1})
    assert result.knn_trained > result.knn_random + 0.1
    assert result.zero_shot > 2 * result.chance


@pytest.mark.slow
def test_mode_learns(tmp_path):
    # measured (kNN of expert 0's image tower, zero-shot of the routed 2-expert ensemble):
    # kNN 0.439 -> 0.570, zero-shot 0.256 (chance 0.1), 1563 s under load
    result = check_learns(tmp_path, "mode", image_text=True, steps=200, batch_size=128,
                          lr=1e-3, warmup_steps=20, overrides={"experts": 2})
    assert result.knn_trained > result.knn_random + 0.08
    assert result.zero_shot > 2 * result.chance
