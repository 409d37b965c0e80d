"""The pretraining trainer, schedules, objectives and CLI (issue 4).

Fast tests use test_vit (dim 64) at 32 px on a few steps; the `slow` tests train for ~1 minute
and compare kNN accuracy against the same architecture with random weights.
"""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app
from vitbench.errors import VitbenchError
from vitbench.pretrain import schedules
from vitbench.pretrain.losses import clip_loss
from vitbench.pretrain.objectives import get_objective, list_objectives
from vitbench.pretrain.objectives.clip import ClipParams
from vitbench.pretrain.trainer import TrainConfig, train

TINY = {"model": "test_vit", "data": "shapes", "resolution": 32, "batch_size": 8}


# ---- schedules: the formulas written out -------------------------------------------------

def test_warmup_cosine_formula():
    base, total, warmup, final = 0.1, 20, 5, 0.01
    for step in range(total + 3):
        if step < warmup:
            expected = base * (step + 1) / warmup
        else:
            t = min(step - warmup, total - warmup) / (total - warmup)
            expected = final + (base - final) * (1 + math.cos(math.pi * t)) / 2
        assert schedules.warmup_cosine(step, total, base, warmup, final) == pytest.approx(expected)
    assert schedules.warmup_cosine(warmup - 1, total, base, warmup) == pytest.approx(base)
    assert schedules.warmup_cosine(total, total, base, warmup, final) == pytest.approx(final)


def test_staged_warmup_cosine_restarts_at_each_stage():
    starts, total = (0, 7, 12), 30
    for step in range(total):
        begin = 0 if step < 7 else 7 if step < 12 else 12
        length = {0: 7, 7: 5, 12: 18}[begin]
        expected = schedules.warmup_cosine(step - begin, length, 1.0, 3, 0.1)
        assert schedules.staged_warmup_cosine(step, starts, total, 1.0, 3, 0.1) == expected
    assert schedules.staged_warmup_cosine(12, starts, total, 1.0, 3) == pytest.approx(1 / 3)


def test_weight_decay_and_ema_momentum_formulas():
    total = 10
    for step in range(total + 1):
        wd = 0.4 + 0.5 * (0.04 - 0.4) * (1 + math.cos(math.pi * step / total))
        assert schedules.weight_decay(step, total, 0.04, 0.4) == pytest.approx(wd)
        assert schedules.weight_decay(step, total, 0.05) == 0.05
        m = 1 - (1 - 0.996) * (math.cos(math.pi * step / total) + 1) / 2  # BYOL's formula
        assert schedules.ema_momentum(step, total, 0.996) == pytest.approx(m)


# ---- objectives --------------------------------------------------------------------------

def test_registry_and_paper_defaults():
    names = [o.name for o in list_objectives()]
    assert names[:2] == ["supervised", "clip"]
    assert get_objective("supervised").Params().label_smoothing == 0.1
    clip = ClipParams()
    assert (clip.init_temperature, clip.max_logit_scale, clip.betas) == (0.07, 100.0, (0.9, 0.98))
    with pytest.raises(VitbenchError, match="closest: clip"):
        get_objective("clpi")


def test_clip_loss_equals_loop():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(12.0)
    total = 0.0
    for i in range(6):  # image i against all texts, text i against all images
        row = [float(scale * img[i] @ txt[j]) for j in range(6)]
        col = [float(scale * img[j] @ txt[i]) for j in range(6)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    assert float(clip_loss(img, txt, scale)) == pytest.approx(total / 12, rel=1e-5)


def test_clip_logit_scale_is_clamped_at_100(tmp_path):
    encoder = vitbench.load("test_vit", pretrained=False, resolution=32)
    objective = get_objective("clip")(encoder, ClipParams())
    assert float(objective.logit_scale.detach().exp()) == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        objective.logit_scale.fill_(10.0)
    objective.after_step(0, 1)
    assert float(objective.logit_scale.detach().exp()) == pytest.approx(100.0, rel=1e-5)


# ---- the trainer -------------------------------------------------------------------------

def _weights(directory) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "encoder.safetensors"))


def test_run_directory_loads_and_logs(tmp_path):
    out = train(TrainConfig("supervised", out=str(tmp_path / "run"), steps=3, lr=1e-3, **TINY))
    encoder = vitbench.load(str(out))
    assert encoder.spec.input_size == 32 and encoder.spec.supervision.value == "fully"
    run = json.loads((out / "run.json").read_text())
    assert (run["objective"], run["step"], run["model"]) == ("supervised", 3, "test_vit")
    # the saved weights are what the loaded encoder runs, and training moved them
    saved = _weights(out)
    loaded = encoder.modules()[0].state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    random = vitbench.load("test_vit", pretrained=False, resolution=32).modules()[0]
    assert not torch.equal(saved["blocks.0.attn.qkv.weight"],
                           random.state_dict()["blocks.0.attn.qkv.weight"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert all(math.isfinite(x["loss"]) and x["lr"] > 0 for x in lines)
    # the checkpoint's state loads with the safe loader
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    state = torch.load(out / "checkpoints" / latest["dir"] / "state.pt", weights_only=True)
    assert int(state["step"]) == 3


@pytest.mark.parametrize("objective", ["supervised", "clip"])
def test_resume_is_exact(tmp_path, objective):
    common = dict(TINY, steps=4, lr=1e-3, checkpoint_every=2)
    straight = train(TrainConfig(objective, out=str(tmp_path / "a"), **common))
    broken = str(tmp_path / "b")
    train(TrainConfig(objective, out=broken, stop_after=3, **common))  # "killed" after step 3
    assert not (tmp_path / "b" / "run.json").exists()
    resumed = train(TrainConfig(objective, out=broken, resume=True, **common))  # from step 2
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = (straight / "metrics.jsonl").read_text().splitlines()
    lb = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in la] == [json.loads(x)["loss"] for x in lb]


def test_gradient_accumulation_matches_full_batch(tmp_path):
    # supervised CE is a mean over the batch: 2 micro-batches of 4 = 1 batch of 8
    common = dict(TINY, steps=2, lr=1e-3)
    a = _weights(train(TrainConfig("supervised", out=str(tmp_path / "a"), **common)))
    b = _weights(train(TrainConfig("supervised", out=str(tmp_path / "b"), accumulate=2,
                                   **common)))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_nan_stops_with_one_line_error(tmp_path):
    # an infinite learning rate turns the weights non-finite after the first update
    with pytest.raises(VitbenchError, match=r"non-finite loss \(nan\) at step 2") as info:
        train(TrainConfig("supervised", out=str(tmp_path / "run"), steps=3, lr=math.inf,
                          warmup_steps=0, **TINY))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "run.json").exists()


DDP_OBJECTIVES = ("supervised", "clip")


def _ddp_worker(rank: int, world: int, port: int, root: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:  # both objectives in one spawn: starting processes is most of the cost
        for objective in DDP_OBJECTIVES:
            train(TrainConfig(objective, out=f"{root}/{objective}", steps=3, lr=1e-3,
                              device="cpu", **TINY))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two")),
                                nprocs=2, join=True)
    for objective in DDP_OBJECTIVES:  # same global batch of 8: 4 per process
        one = train(TrainConfig(objective, out=str(tmp_path / "one" / objective), steps=3,
                                lr=1e-3, **TINY))
        two = tmp_path / "two" / objective
        a, b = _weights(one), _weights(two)
        assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a), objective
        losses = [[json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()]
                  for d in (one, two)]
        assert np.allclose(losses[0], losses[1], atol=1e-5)  # logged: the global batch's mean
        assert json.loads((two / "run.json").read_text())["world_size"] == 2


# ---- CLI ---------------------------------------------------------------------------------

def test_cli_list_and_tiny_run(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["pretrain", "--list"])
    assert listed.exit_code == 0
    assert "supervised" in listed.output and "clip" in listed.output
    out = tmp_path / "cli"
    result = runner.invoke(app, ["pretrain", "--objective", "clip", "--model", "test_vit",
                                 "--steps", "2", "--batch-size", "8", "--resolution", "32",
                                 "--data", "digits", "--knn-every", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert vitbench.load(str(out)).spec.name == str(out)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    knn = [x["knn"] for x in logged if "knn" in x]
    assert len(knn) == 1 and 0.1 <= knn[0] <= 1.0  # digits: above chance even at random init
    bad = runner.invoke(app, ["pretrain", "--objective", "clip", "--model", "test_vit",
                              "--data", "cifar10", "--steps", "1", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "cifar10" in bad.output


def test_multi_crop_on_a_fixed_size_model_is_a_one_line_error(tmp_path):
    # BEiT's relative position tables fix its input size: DINO's smaller local crops cannot run
    result = CliRunner().invoke(app, ["pretrain", "--objective", "dino", "--model", "beit_b16",
                                      "--resolution", "64", "--steps", "1", "--batch-size", "2",
                                      "--data", "digits", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "32 px local crops" in result.output and "local_crops=0" in result.output


# ---- views, layer decay, online kNN, load_objective, recipes ------------------------------

def test_views_are_deterministic_per_step_and_sized_by_the_view():
    from vitbench.data import get_dataset
    from vitbench.pretrain.data import Augment, TrainBatches, View

    views = (View(), View(size=0.5, scale=(0.1, 0.4), jitter=1.0, grayscale=0.5, blur=0.5))
    batches = TrainBatches(get_dataset("shapes", "train"), Augment(32, (0.5,) * 3, (0.5,) * 3),
                           8, seed=3, views=views)
    first, again, other = batches.batch(5), batches.batch(5), batches.batch(6)
    assert [v.shape for v in first["views"]] == [(8, 3, 32, 32), (8, 3, 16, 16)]
    for a, b in zip(first["views"], again["views"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first["views"][0], other["views"][0])
    assert not torch.equal(first["views"][0], first["image"])  # views draw their own crops
    # rank 1 of 2 gets exactly rows 4..7 of the global batch's views
    half = batches.batch(5, rank=1, world=2)
    torch.testing.assert_close(half["views"][1], first["views"][1][4:], rtol=0, atol=0)


def test_layer_decay_scales_each_blocks_learning_rate():
    from vitbench.pretrain.trainer import _param_groups

    objective = get_objective("supervised")(vitbench.load("vit_pico", pretrained=False),
                                            get_objective("supervised").Params(), num_classes=3)
    decay, blocks = 0.5, len(objective.backbone.blocks)
    groups = _param_groups(objective, 0.05, layer_decay=decay)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(objective.named_parameters())
    assert scale[id(named["backbone.patch_embed.proj.weight"])] == decay ** (blocks + 1)
    for i in range(blocks):
        assert scale[id(named[f"backbone.blocks.{i}.attn.qkv.weight"])] == decay ** (blocks - i)
    assert scale[id(named["head.weight"])] == 1.0
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert wd[id(named["backbone.blocks.0.norm1.weight"])] == 0.0
    assert wd[id(named["backbone.blocks.0.attn.qkv.weight"])] == 0.05


def test_online_knn_is_the_knn_of_encoded_features():
    from vitbench.data import get_dataset
    from vitbench.evals.protocols.knn import knn_classify
    from vitbench.pretrain.trainer import online_knn

    encoder = vitbench.load("vit_pico", pretrained=False)
    train_set, test_set = get_dataset("digits", "train"), get_dataset("digits", "test")

    def encode(dataset):
        return torch.cat([encoder.encode_image(torch.stack(
            [encoder.transform(dataset.image(i)) for i in range(j, min(j + 500, len(dataset)))]
        )).pooled for j in range(0, len(dataset), 500)])

    expected = (knn_classify(encode(train_set), train_set.labels, encode(test_set), k=20)
                == test_set.labels).mean()
    assert online_knn(encoder, "digits") == pytest.approx(float(expected))


def test_load_objective_restores_the_whole_objective(tmp_path):
    from vitbench.pretrain.trainer import load_objective

    out = train(TrainConfig("clip", "vit_pico", data="digits", steps=3, batch_size=8,
                            out=str(tmp_path / "run")))
    objective = load_objective(out)
    saved = load_file(str(out / "checkpoints" / "step-3" / "weights.safetensors"))
    for name, value in objective.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    encoder = vitbench.load(str(out))
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the run directory's encoder is the objective's image tower
        expected = torch.nn.functional.normalize(
            objective.image_proj(encoder.encode_image(pixels).pooled), dim=-1)
        torch.testing.assert_close(objective.embed_image(pixels), expected)


def test_recipe_runs_train_once_and_are_cached(tmp_path, monkeypatch):
    import vitbench.pretrain.trainer as trainer
    from vitbench.pretrain import recipes

    tiny = recipes.Recipe("tiny-clip", "clip", steps=2, batch_size=8)
    monkeypatch.setitem(recipes.RECIPES, "tiny-clip", tiny)
    calls = []
    original = trainer.train

    def counting(config):
        calls.append(config.out)
        return original(config)

    monkeypatch.setattr(trainer, "train", counting)
    (tmp_path / "runs").mkdir()
    stale = tmp_path / "runs" / f"tiny-clip-{tiny.key()}.partial"
    stale.mkdir()  # what a killed first attempt leaves
    first = recipes.ensure_run("tiny-clip", tmp_path)
    second = recipes.ensure_run("tiny-clip", tmp_path)
    assert first == second and len(calls) == 1
    assert not stale.exists() and vitbench.load(str(first)).spec.supervision.value == "weakly"
    with pytest.raises(VitbenchError, match="recipe"):
        recipes.ensure_run("no-such-recipe", tmp_path)


def test_step_moves_multi_crop_views_to_the_device():
    """The views list must follow the batch onto the GPU (a CPU crop under CUDA autocast
    failed as 'Input type (float) and bias type (BFloat16)'); captions stay strings."""
    from vitbench.pretrain.trainer import _to_device

    meta = torch.device("meta")  # any device but the CPU's shows the move
    views = _to_device([torch.zeros(2, 3), torch.zeros(1, 3)], meta)
    assert [v.device for v in views] == [meta, meta]
    assert _to_device(["a cat", "a dog"], meta) == ["a cat", "a dog"]
    assert _to_device(torch.zeros(1), meta).device == meta
