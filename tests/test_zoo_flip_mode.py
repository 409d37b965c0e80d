"""flip_l14 (open_clip ViT-L-14 with FLIP's published shape) and mode_b16 (MoDE's routed ensemble).

MoDE is checked on a weights directory written here with two tiny experts (a two-block open_clip
CLIP added to open_clip's configs here, used as a bring-your-own entry; different seeds), six
fine centres and a tiny BERT router with a WordPiece tokenizer: routing weights against the
official formula transcribed below (MetaCLIP apps/mode/post_report_ensemble.py), the ensemble
against the experts' own logits with each expert loaded on its own through vitbench.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import vitbench
from vitbench.errors import VitbenchError
from vitbench.zoo.reference.mode import MoDE
from vitbench.zoo.registry import build, get_entry
from vitbench.zoo.weights import WeightsRequest

TINY_CLIP = "vitbench-test-tiny-clip"  # an open_clip config this file adds (fixture below)
EXPERT = f"open_clip:{TINY_CLIP}"
SIZE = 64  # its input size
ROUTE_DIM, FINE = 32, 6
ASSIGN = [0, 0, 0, 1, 1, 0]  # the centres next to classes 0-2 route to expert 0, class 3 to 1
WORDS = ["a", "photo", "of", "the", "cat", "dog", "car", "tree", "red", "small", "picture"]
CLASSES = ["cat", "dog", ["car", "red car"], "tree"]
TEMPLATES = ["a photo of the {}", "a small picture of a {}"]


# -- FLIP ----------------------------------------------------------------------------------------


def test_flip_is_open_clip_vit_l14_with_flips_published_shape():
    """FLIP's configs (configs/default.py; ViT-L, 224 px): image width 1024, 24 blocks, 16
    heads; text width 768, 12 blocks, 12 heads; joint space 768. Patch 14: the paper's
    ViT-L/14."""
    import open_clip

    spec = get_entry("flip_l14").spec
    config = open_clip.get_model_config(spec.backend_id)
    vision, text = config["vision_cfg"], config["text_cfg"]
    assert (vision["width"], vision["layers"], vision["patch_size"]) == (1024, 24, 14)
    assert vision["width"] // vision.get("head_width", 64) == 16
    assert (text["width"], text["layers"], text["heads"]) == (768, 12, 12)
    assert config["embed_dim"] == spec.projection_dim == 768
    assert vision["image_size"] == spec.input_size == 224
    assert spec.family == "flip" and spec.weights.hf_hub_id is None
    with torch.device("meta"):
        encoder = build(get_entry("flip_l14"), WeightsRequest("random", "random"), None)
    params = sum(p.numel() for p in encoder.model.visual.parameters()) / 1e6
    assert params == pytest.approx(spec.params_m, rel=1e-4)


def test_flip_has_no_published_weights_one_line():
    with pytest.raises(VitbenchError, match="no published weights.*weights file") as info:
        vitbench.load("flip_l14")
    assert "\n" not in str(info.value)
    assert "JAX" in get_entry("flip_l14").spec.notes


@pytest.mark.slow
def test_flip_loads_an_open_clip_state_dict(tmp_path):
    import open_clip

    torch.manual_seed(5)
    model = open_clip.create_model("ViT-L-14", pretrained=None).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              tmp_path / "open_clip_model.safetensors")
    encoder = vitbench.load("flip_l14", pretrained=tmp_path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = model.encode_image(x)
    torch.testing.assert_close(encoder.encode_image(x).projected, want, rtol=1e-5, atol=1e-5)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "visual.proj"}
    save_file(state, tmp_path / "incomplete.safetensors")
    with pytest.raises(VitbenchError, match="do not fit flip_l14") as info:
        vitbench.load("flip_l14", pretrained=tmp_path / "incomplete.safetensors")
    assert "\n" not in str(info.value)


# -- MoDE: the directory written here ------------------------------------------------------------


def _router(directory):
    """A tiny BERT with a pooler and its WordPiece tokenizer, saved as transformers does."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir()
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory)
    torch.manual_seed(3)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=ROUTE_DIM, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)


@pytest.fixture(scope="module", autouse=True)
def tiny_clip(tmp_path_factory):
    """A two-block CLIP (ViT-?/16 at 64 px, text width 64) in open_clip's config registry."""
    import open_clip

    config = {"embed_dim": 32,
              "vision_cfg": {"image_size": SIZE, "layers": 2, "width": 64, "head_width": 32,
                             "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                           "layers": 2}}
    file = tmp_path_factory.mktemp("open_clip_config") / f"{TINY_CLIP}.json"
    file.write_text(json.dumps(config))
    open_clip.add_model_config(file)


def _write_directory(directory, official=False):
    """Two tiny experts (seeds 100, 101), centres and router; the official layout writes
    prep_hrchy.py's F6.pth / F6-C2.pth and MetaCLIP's checkpoint of expert 0."""
    import open_clip

    directory.mkdir()
    for k in range(2):
        torch.manual_seed(100 + k)
        state = open_clip.create_model(TINY_CLIP, pretrained=None).state_dict()
        if official and k == 0:  # MetaCLIP training: DDP-prefixed keys in a dict
            (directory / "expert_0" / "checkpoints").mkdir(parents=True)
            torch.save({"epoch": 32, "state_dict": {f"module.{n}": v for n, v in state.items()}},
                       directory / "expert_0" / "checkpoints" / "epoch_latest.pt")
        elif k == 0:
            save_file({n: v.contiguous() for n, v in state.items()},
                      directory / "expert_0.safetensors")
        else:  # open_clip's own file name inside a directory
            (directory / "expert_1").mkdir()
            save_file({n: v.contiguous() for n, v in state.items()},
                      directory / "expert_1" / "open_clip_model.safetensors")
    _router(directory / "router")
    # fine centres 0-3 sit near the four classes (as a task's names sit near caption clusters),
    # so the routing is far from uniform and a wrong weight shows
    generator = torch.Generator().manual_seed(7)
    near = _official_class_embeddings(directory / "router")
    fine = torch.cat([near, F.normalize(torch.randn(2, ROUTE_DIM, generator=generator), dim=-1)])
    fine = fine + 0.05 * torch.randn(FINE, ROUTE_DIM, generator=generator)
    coarse = torch.randn(2, ROUTE_DIM, generator=generator)
    assign = torch.tensor(ASSIGN)
    if official:
        torch.save({"center": fine}, directory / "F6.pth")
        torch.save({"coarse": coarse, "assign": assign}, directory / "F6-C2.pth")
    else:
        save_file({"fine": fine, "assign": assign, "coarse": coarse},
                  directory / "centres.safetensors")
    (directory / "mode.json").write_text(json.dumps({"experts": [EXPERT, EXPERT]}))
    return directory


@pytest.fixture(scope="module")
def mode_dir(tmp_path_factory):
    return _write_directory(tmp_path_factory.mktemp("mode") / "weights")


@pytest.fixture(scope="module")
def mode(mode_dir):
    return MoDE.from_directory(mode_dir).eval()


def _official_weights(distance, assign, n_experts, scale=5.0, temperature=8.0, many=200):
    """post_report_ensemble.py's weights, written as it does: numpy, one class at a time."""
    distance, hrchy = np.asarray(distance, dtype=np.float64), np.asarray(ASSIGN)[assign]
    n_class = len(distance)
    raw = np.zeros(n_experts)
    for key in range(n_experts):
        item = distance[hrchy == key]
        if len(item) > 0:
            sharpen_add = np.exp(0.5 - np.sqrt(n_class)) if n_class < 10 else 0.0
            sharpen_mul = scale * np.log10(max(10, n_class - many))
            raw[key] = np.exp((sharpen_add - item) * sharpen_mul).sum()
    z = np.exp(raw / temperature - (raw / temperature).max())
    return z / z.sum()


def _nearest(embeddings, fine):
    """Euclidean distance to, and index of, the nearest fine centre: a plain loop."""
    out = [min((float(torch.linalg.norm(e - c)), j) for j, c in enumerate(fine))
           for e in embeddings]
    return [d for d, _ in out], [j for _, j in out]


@pytest.mark.parametrize("n_classes", [3, 12, 230])  # the three branches of the sharpening
def test_routing_weights_follow_the_official_formula(mode, n_classes):
    generator = torch.Generator().manual_seed(n_classes)
    embeddings = F.normalize(torch.randn(n_classes, ROUTE_DIM, generator=generator), dim=-1)
    distance, assign = _nearest(embeddings, mode.fine)
    want = _official_weights(distance, assign, 2)
    got = mode.routing_weights(embeddings)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)
    assert got.sum().item() == pytest.approx(1.0)


def _official_class_embeddings(router_dir):
    """prep_feature.py's build_text_indfeatures: per class (tokenised on its own), the
    pooler_output of every prompt, normalised, averaged, normalised."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(router_dir, local_files_only=True)
    router = AutoModel.from_pretrained(router_dir, local_files_only=True).eval()
    out = []
    for label in CLASSES:
        names = label if isinstance(label, list) else [label]
        texts = tokenizer([t.format(n) for t in TEMPLATES for n in names], padding=True,
                          truncation=True, return_tensors="pt")
        with torch.no_grad():
            emb = router(**texts).pooler_output
        emb = emb / emb.norm(dim=-1, keepdim=True)
        out.append(F.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(out)


def test_router_embeds_class_names_as_the_official_prep(mode, mode_dir):
    torch.testing.assert_close(mode.embed_classes(CLASSES, TEMPLATES),
                               _official_class_embeddings(mode_dir / "router"),
                               rtol=1e-5, atol=1e-5)


def _expert_logits(expert_path, pixels):
    """Expert logits as MetaCLIP's clipeval computes them, the expert loaded on its own."""
    encoder = vitbench.load(EXPERT, pretrained=expert_path)
    image = F.normalize(encoder.encode_image(pixels).projected, dim=-1)
    classes = []
    for label in CLASSES:
        names = label if isinstance(label, list) else [label]
        text = F.normalize(encoder.encode_text([t.format(n) for t in TEMPLATES for n in names]),
                           dim=-1)
        classes.append(F.normalize(text.mean(dim=0), dim=-1))
    return image @ torch.stack(classes).T


def test_ensemble_equals_the_experts_own_logits_combined(mode, mode_dir):
    pixels = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    experts = [_expert_logits(mode_dir / "expert_0.safetensors", pixels),
               _expert_logits(mode_dir / "expert_1", pixels)]
    assert (experts[0] - experts[1]).abs().max() > 1e-2  # weights matter for the result
    distance, assign = _nearest(_official_class_embeddings(mode_dir / "router"), mode.fine)
    weights = _official_weights(distance, assign, 2)
    assert abs(weights[0] - weights[1]) > 0.02  # a non-uniform routing
    want = sum(float(w) * logits for w, logits in zip(weights, experts, strict=True))
    with torch.no_grad():
        got = mode.zero_shot_logits(pixels, CLASSES, TEMPLATES)
        per_expert = mode.expert_logits(pixels, CLASSES, TEMPLATES)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_expert, torch.stack(experts), rtol=1e-5, atol=1e-5)


def test_features_concatenate_the_experts(mode, mode_dir):
    pixels = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    texts = ["a photo of the cat", "a red car"]
    experts = [vitbench.load(EXPERT, pretrained=mode_dir / "expert_0.safetensors"),
               vitbench.load(EXPERT, pretrained=mode_dir / "expert_1")]
    feats = [e.encode_image(pixels) for e in experts]
    text = [F.normalize(e.encode_text(texts), dim=-1) for e in experts]
    with torch.no_grad():
        got = mode.forward_image(pixels)
        got_text = mode.forward_text(texts)
    torch.testing.assert_close(got.pooled, torch.cat([f.pooled for f in feats], 1))
    torch.testing.assert_close(got.tokens, torch.cat([f.tokens for f in feats], 2))
    torch.testing.assert_close(got.projected, torch.cat(
        [F.normalize(f.projected, dim=-1) for f in feats], 1) / math.sqrt(2))
    # cosine in the joint space = the uniform average of the experts' cosines
    uniform = sum(F.normalize(f.projected, dim=-1) @ t.T for f, t in zip(feats, text,
                                                                         strict=True)) / 2
    torch.testing.assert_close(got.projected @ got_text.T, uniform, rtol=1e-5, atol=1e-5)


def test_official_files_load_as_the_own_layout(mode, tmp_path):
    official = MoDE.from_directory(_write_directory(tmp_path / "official", official=True))
    for name in ("fine", "assign", "coarse"):
        assert torch.equal(getattr(official, name), getattr(mode, name))
    for ours, theirs in zip(mode.state_dict().values(), official.state_dict().values(),
                            strict=True):
        assert torch.equal(ours, theirs)
    # vitbench's own layout: the module's state dict in one file
    save_file({k: v.contiguous() for k, v in mode.state_dict().items()},
              tmp_path / "model.safetensors")
    fresh = MoDE([EXPERT, EXPERT], fine_clusters=FINE, route_dim=ROUTE_DIM)
    fresh.load_directory(tmp_path)
    for ours, theirs in zip(mode.state_dict().values(), fresh.state_dict().values(),
                            strict=True):
        assert torch.equal(ours, theirs)


def test_mode_errors_are_one_line(mode_dir, tmp_path):
    no_router = tmp_path / "no_router"
    no_router.mkdir()
    for name in ("expert_0.safetensors", "centres.safetensors", "mode.json"):
        (no_router / name).symlink_to(mode_dir / name)
    (no_router / "expert_1").symlink_to(mode_dir / "expert_1")
    model = MoDE.from_directory(no_router)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "mode.json").write_text(json.dumps({"experts": [EXPERT, EXPERT]}))
    cases = [
        (lambda: model.embed_classes(CLASSES), "router/"),
        (lambda: vitbench.load("mode_b16"), "no published weights"),
        (lambda: MoDE.from_directory(tmp_path / "bad"), "no cluster centres"),
        (lambda: MoDE.from_directory(tmp_path), "no mode.json"),
        (lambda: model.zero_shot_logits(torch.zeros(1, 3, SIZE, SIZE), []), "class names"),
        (lambda: model.routing_weights(torch.zeros(3, ROUTE_DIM + 1)), "like the fine centres"),
        (lambda: MoDE(["test_vit"], fine_clusters=2, route_dim=4), "no text tower"),
    ]
    for call, message in cases:
        with pytest.raises(VitbenchError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_mode_b16_on_meta_is_four_clip_b16_towers():
    spec = get_entry("mode_b16").spec
    with torch.device("meta"):
        encoder = build(get_entry("mode_b16"), WeightsRequest("random", "random"), None)
        out = encoder._forward(torch.empty(2, 3, 224, 224))
    experts = encoder.model.experts
    assert len(experts) == 4 and encoder.model.expert_names == ("clip_b16",) * 4
    one = sum(p.numel() for p in experts[0].visual.parameters()) / 1e6
    assert one == pytest.approx(get_entry("clip_b16").spec.params_m, rel=1e-3)
    assert out.pooled.shape == (2, spec.embed_dim) and out.projected.shape == (
        2, spec.projection_dim)


@pytest.mark.slow
def test_mode_b16_loads_its_directory_through_vitbench(tmp_path):
    """The registered entry end to end: four clip_b16 experts written as the layout says."""
    import open_clip

    (tmp_path / "mode.json").write_text(json.dumps({"experts": ["clip_b16"] * 4}))
    for k in range(4):
        torch.manual_seed(200 + k)
        model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
        save_file(model.state_dict(), tmp_path / f"expert_{k}.safetensors")
    save_file({"fine": torch.randn(16, 768), "assign": torch.arange(16) % 4,
               "coarse": torch.randn(4, 768)}, tmp_path / "centres.safetensors")
    encoder = vitbench.load("mode_b16", pretrained=tmp_path)
    pixels = torch.randn(1, 3, 224, 224)
    got = encoder.encode_image(pixels)
    first = vitbench.load("clip_b16", pretrained=tmp_path / "expert_0.safetensors")
    torch.testing.assert_close(got.pooled[:, :768], first.encode_image(pixels).pooled)
    assert got.pooled.shape == (1, 3072) and encoder.loaded.kind == "file"
    with pytest.raises(VitbenchError, match="holds the experts"):
        (tmp_path / "mode.json").write_text(json.dumps({"experts": ["clip_b32"] * 4}))
        vitbench.load("mode_b16", pretrained=tmp_path)
