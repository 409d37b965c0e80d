"""Zoo parity and facts, parametrized over the whole registry.

Parity: every entry backed by a library (timm, open_clip, transformers), loaded through
vitbench from weights saved on disk in the backend's own format, equals the backend model
itself on the same input (pooled, tokens, projected; 1e-5 in fp32). Entries sharing one
architecture share one parity run (the code path is the same; only weights and preprocessing
facts differ, which the facts tests check). Facts: every entry, on the meta device (no memory,
no compute), states its params, dims, GFLOPs and preprocessing truthfully, and returns the
ImageFeatures contract. Reference implementations (backend "reference") get their golden
tests in their own files (tests/test_zoo_<family>.py).
"""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

import vitbench
from vitbench.contract import ImageFeatures
from vitbench.errors import VitbenchError
from vitbench.zoo.registry import build, get_entry, list_models
from vitbench.zoo.weights import WeightsRequest

ENTRIES = [s.name for s in list_models() if s.backend != "pixels"]
LIBRARY_BACKENDS = ("timm", "open_clip", "transformers")
PARITY_SIZE = 224  # ViTs whose position embeddings resample run parity at most at this size
# cost = whole-model params (M, text tower included) x (size / 224)^2, roughly 0.1 s per unit
# on two cores. The cheapest entry of each code path always runs: in the fast suite if it costs
# at most FAST_COST, else with -m slow (SAM's 1024 px encoder). Other architectures run with
# -m slow up to SLOW_COST (B-size models, Swin-L, SigLIP B/16 at 256 px). The L-size ones and
# SigLIP 2 B/16 (375M with its 256k-token text tower) run the same code as smaller entries
# that do run, at ~20-30 s each: together ~5 min of CI's 45, which the default suite's
# shapes_mllm needed. Beyond them (H/14 and SO400M towers, 384+ px SigLIPs, the giants) a
# parity run takes minutes and many GB here. Above the cap, an entry's facts are checked on
# meta only.
# VITBENCH_FULL_PARITY=1 lifts both caps (a bigger machine runs every architecture with -m slow).
FULL = os.environ.get("VITBENCH_FULL_PARITY") == "1"
FAST_COST = 260
SLOW_COST = float("inf") if FULL else 300
GIANT_M = float("inf") if FULL else 700


def _parity_size(spec) -> int:
    return min(spec.input_size, PARITY_SIZE) if spec.dynamic_resolution else spec.input_size


def _code_path(entry) -> tuple:
    """Which backend code computes an entry's features: the timm model module, open_clip's
    tower kind, or the transformers model type. One entry per code path runs in the fast
    suite; the others exercise the same code with more parameters (-m slow)."""
    spec = entry.spec
    if spec.backend == "timm":
        from timm.models import model_entrypoint

        return spec.backend, model_entrypoint(spec.backend_id).__module__
    if spec.backend == "open_clip":
        import open_clip
        from timm.models import model_entrypoint

        vision = open_clip.get_model_config(spec.backend_id)["vision_cfg"]
        if "timm_model_name" in vision:
            return spec.backend, model_entrypoint(vision["timm_model_name"]).__module__
        resnet = isinstance(vision["layers"], list)
        return spec.backend, "resnet" if resnet else "vit", bool(vision.get("attentional_pool"))
    return spec.backend, entry.build_args["config"]["model_type"]


def _parity_params():
    """One parity run per architecture, fast for the cheapest entry of each code path."""
    by_arch = {}
    for name in ENTRIES:
        entry = get_entry(name)
        spec = entry.spec
        whole = spec.weights.size_mb / 4 or spec.params_m  # no published file: the tower
        cost = whole * (_parity_size(spec) / 224) ** 2
        if spec.backend in LIBRARY_BACKENDS and spec.params_m <= GIANT_M:
            by_arch.setdefault((spec.backend, spec.backend_id, repr(entry.build_args)),
                               (cost, name, _code_path(entry)))
    cheapest = {}
    for cost, name, path in sorted(by_arch.values()):
        cheapest.setdefault(path, (cost, name))
    first = {name for _, name in cheapest.values()}
    fast = {name for cost, name in cheapest.values() if cost <= FAST_COST}
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow)
            for cost, name, _ in by_arch.values() if name in first or cost <= SLOW_COST]


def _tokens(model, feats):
    """Patch tokens from a timm forward_features output, written out independently of the
    adapter: drop prefix tokens of a sequence, flatten a feature map (NHWC or NCHW)."""
    if feats.ndim == 3:
        return feats[:, model.num_prefix_tokens:]
    if feats.shape[-1] == model.num_features and feats.shape[1] != model.num_features:
        return feats.flatten(1, 2)
    return feats.flatten(2).transpose(1, 2)


def _reference(name: str, directory, size: int):
    """Build the backend model independently (other seed) at `size`, save it in the backend's
    own format, and return (path to load, function computing the backend's features)."""
    entry = get_entry(name)
    spec = entry.spec
    torch.manual_seed(1234)
    if spec.backend == "timm":
        import timm

        kwargs = {**entry.build_args, **({"img_size": size} if size != spec.input_size else {})}
        arch = f"{spec.backend_id}.{spec.weights.tag}" if spec.weights.tag else spec.backend_id
        model = timm.create_model(arch, pretrained=False, **kwargs).eval()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  directory / "model.safetensors")

        def features(x):
            feats = model.forward_features(x)
            return ImageFeatures(model.forward_head(feats, pre_logits=True), _tokens(model, feats))
        return directory, features
    if spec.backend == "open_clip":
        import open_clip

        kwargs = {"force_image_size": size} if size != spec.input_size else {}
        model = open_clip.create_model(spec.backend_id, pretrained=None, **entry.build_args,
                                       **kwargs).eval()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  directory / "open_clip_model.safetensors")
        return directory / "open_clip_model.safetensors", lambda x: _open_clip_features(model, x)
    if spec.backend == "transformers":
        from transformers import AutoConfig, AutoModel

        model = AutoModel.from_config(AutoConfig.for_model(**entry.build_args["config"])).eval()
        model.save_pretrained(directory)

        def features(x):
            out = model.vision_model(pixel_values=x)
            projected = model.get_image_features(pixel_values=x)
            projected = getattr(projected, "pooler_output", projected)
            return ImageFeatures(out.pooler_output, out.last_hidden_state, projected)
        return directory, features
    raise AssertionError(spec.backend)


def _open_clip_features(model, x):
    """open_clip's own outputs. projected: encode_image unnormalised (CoCa normalises by
    default). pooled: the tower before its projection; tokens: the patch tokens."""
    visual = model.visual
    projected = model.encode_image(x, normalize=False)
    if hasattr(visual, "trunk"):  # timm trunk: pre-logits of the trunk, its own tokens
        feats = visual.trunk.forward_features(x)
        pooled = visual.trunk.forward_head(feats, pre_logits=True)
        return ImageFeatures(pooled, _tokens(visual.trunk, feats), projected)
    if hasattr(visual, "attnpool"):  # ModifiedResNet: the attention pool projects
        maps = visual.forward_intermediates(x, indices=[4], intermediates_only=True)
        layer4 = maps["image_intermediates"][-1]  # NCHW
        return ImageFeatures(projected, layer4.flatten(2).transpose(1, 2), projected)
    coca = visual.attn_pool is not None  # CoCa's tokens: before the pooler, no final norm
    out = visual.forward_intermediates(x, indices=[-1], normalize_intermediates=not coca,
                                       output_fmt="NLC")
    proj, visual.proj = visual.proj, None
    pooled = visual(x)[0] if visual.output_tokens else visual(x)
    visual.proj = proj
    return ImageFeatures(pooled, out["image_intermediates"][-1], projected)


@pytest.mark.parametrize("name", _parity_params())
def test_loaded_weights_equal_backend(name, tmp_path):
    spec = get_entry(name).spec
    size = _parity_size(spec)
    path, reference = _reference(name, tmp_path, size)
    encoder = vitbench.load(name, pretrained=path, resolution=size)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        want = reference(x)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.pooled, want.pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.tokens, want.tokens, rtol=1e-5, atol=1e-5)
    assert (got.projected is None) == (want.projected is None)
    if want.projected is not None:
        torch.testing.assert_close(got.projected, want.projected, rtol=1e-5, atol=1e-5)
    assert encoder.loaded.kind == "file"


def _meta_encoder(name, monkeypatch):
    """The vitbench encoder built on the meta device: shapes and counts without memory.
    Truncated-normal init has no meta kernel and decomposes into slow reference ops (seconds
    per model); on meta tensors there is nothing to initialise anyway."""
    import timm.layers.weight_init

    monkeypatch.setattr(timm.layers.weight_init, "_trunc_normal_", lambda t, *args: t)
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", lambda t, *args, **kwargs: t)
    with torch.device("meta"):
        return build(get_entry(name), WeightsRequest("random", "random"), None)


def _backend_facts(spec, model):
    """Facts the backend library itself states about the architecture and its weights."""
    if spec.backend == "timm" and spec.weights.tag:  # untagged: nothing published to agree with
        cfg = model.pretrained_cfg
        assert cfg["input_size"][-1] == spec.input_size
        assert tuple(cfg["mean"]) == spec.mean and tuple(cfg["std"]) == spec.std
        assert cfg["crop_pct"] == spec.crop_pct
        assert cfg["hf_hub_id"] == spec.weights.hf_hub_id
    if spec.backend == "open_clip" and spec.weights.tag:  # FLIP has no open_clip weights
        import open_clip

        cfg = open_clip.get_pretrained_cfg(spec.backend_id, spec.weights.tag)
        model_cfg = open_clip.get_model_config(spec.backend_id)
        assert tuple(cfg["mean"]) == spec.mean and tuple(cfg["std"]) == spec.std
        assert cfg["hf_hub"].strip("/") == spec.weights.hf_hub_id
        assert cfg.get("resize_mode", "shortest") == spec.resize_mode
        assert model_cfg["vision_cfg"]["image_size"] == spec.input_size
        # weights trained with QuickGELU load silently into a GELU model and compute others
        assert model_cfg.get("quick_gelu", False) == cfg.get("quick_gelu", False)


def _image_tower(spec, model):
    if spec.backend == "open_clip":
        return model.visual
    if spec.backend == "reference":
        return model.image_tower() if hasattr(model, "image_tower") else model
    return getattr(model, "vision_model", model)


@pytest.mark.parametrize("name", ENTRIES)
def test_spec_facts_and_contract_on_meta(name, monkeypatch):
    spec = get_entry(name).spec
    encoder = _meta_encoder(name, monkeypatch)
    model = encoder.modules()[0]
    _backend_facts(spec, model)
    params = sum(p.numel() for p in _image_tower(spec, model).parameters()) / 1e6
    assert params == pytest.approx(spec.params_m, rel=5e-3)

    size = spec.input_size
    for parameter in model.parameters():  # no autograd bookkeeping on meta tensors
        parameter.requires_grad_(False)
    with FlopCounterMode(display=False) as flops:
        out = encoder._forward(torch.empty(2, 3, size, size, device="meta"))
    if spec.gflops is not None:  # multiply-accumulates of one image
        assert flops.get_total_flops() / 2 / 2 / 1e9 == pytest.approx(spec.gflops, rel=0.01,
                                                                       abs=0.005)
    assert isinstance(out, ImageFeatures)
    assert out.pooled.shape == (2, spec.embed_dim)
    assert (out.projected is None) == (not spec.has_text)
    if spec.has_text:
        assert out.projected.shape == (2, spec.projection_dim)
    if out.tokens is not None:
        assert out.tokens.ndim == 3 and out.tokens.shape[0] == 2
        if spec.dynamic_resolution and spec.patch_size:  # plain ViTs: one token per patch
            assert out.tokens.shape[1] == (size // spec.patch_size) ** 2


PUBLISHED = [n for n in ENTRIES if get_entry(n).spec.published_params_m]


@pytest.mark.parametrize("name", PUBLISHED)
def test_params_agree_with_the_published_figure(name):
    """The measured count (checked against the model above) is within 2% of the paper's, or,
    for a figure published in whole millions (Vim-Ti's "7M"), rounds to it."""
    spec = get_entry(name).spec
    published = spec.published_params_m
    assert spec.params_source, f"{name}: say where the published figure comes from"
    assert (spec.params_m == pytest.approx(published, rel=0.02)
            or (published == int(published) and round(spec.params_m) == published))


def _image(seed=0, size=(97, 131)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", ["test_vit", "dinov2_s14", "eva02_t"])
def test_transform_equals_timm(name):
    import timm
    from timm.data import create_transform, resolve_data_config

    encoder = vitbench.load(name, pretrained=False)
    theirs = create_transform(**resolve_data_config({}, model=encoder.model))
    image = _image()
    torch.testing.assert_close(encoder.transform(image), theirs(image))
    assert timm  # imported for the data helpers above


def test_transform_equals_open_clip():
    import open_clip

    encoder = vitbench.load("clip_b32", pretrained=False)
    spec = encoder.spec
    theirs = open_clip.image_transform(spec.input_size, is_train=False, mean=spec.mean,
                                       std=spec.std)
    image = _image(1)
    torch.testing.assert_close(encoder.transform(image), theirs(image))


def test_transform_equals_siglip_processor():
    from transformers import SiglipImageProcessor

    encoder = vitbench.load("siglip_b16", pretrained=False)
    image = _image(2)
    theirs = SiglipImageProcessor()(image, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(encoder.transform(image), theirs, atol=2e-2, rtol=0)
    # PIL vs processor rounding: the two differ by at most one grey level on a few pixels
    assert (encoder.transform(image) - theirs).abs().mean() < 2e-3


def test_text_tower_parity_and_image_only_error():
    import open_clip

    encoder = vitbench.load("clip_b32", pretrained=False)
    texts = ["a photo of a cat", "a red square"]
    want = encoder.model.encode_text(open_clip.get_tokenizer("ViT-B-32-quickgelu")(texts))
    torch.testing.assert_close(encoder.encode_text(texts), want.detach())
    with pytest.raises(VitbenchError, match="no text tower"):
        vitbench.load("test_vit", pretrained=False).encode_text(texts)


def test_siglip_text_needs_tokenizer_files_offline():
    with pytest.raises(VitbenchError, match="tokenizer"):
        vitbench.load("siglip_b16", pretrained=False).encode_text(["a cat"])


def test_random_weights_are_seeded_and_not_the_callers_rng():
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    a = vitbench.load("test_vit", pretrained=False)
    after = torch.rand(1)
    b = vitbench.load("test_vit", pretrained=False)
    assert torch.equal(before, after)  # loading did not consume the caller's random stream
    x = torch.randn(2, 3, 160, 160)
    torch.testing.assert_close(a.encode_image(x).pooled, b.encode_image(x).pooled)


def test_pth_checkpoint_loads_with_weights_only(tmp_path):
    import timm

    torch.manual_seed(3)
    model = timm.create_model("test_vit.r160_in1k", pretrained=False).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    encoder = vitbench.load("test_vit", pretrained=tmp_path / "ckpt.pth")
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(encoder.encode_image(x).pooled, want)


class _Payload:  # a pickled object that weights_only=True must refuse
    pass


def test_pickle_payload_is_refused(tmp_path):
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(VitbenchError, match="weights_only"):
        vitbench.load("test_vit", pretrained=tmp_path / "evil.pth")


def test_mismatched_weights_are_one_line_error(tmp_path):
    import timm

    model = timm.create_model("vit_small_patch16_224", pretrained=False)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(VitbenchError, match="do not fit test_vit") as info:
        vitbench.load("test_vit", pretrained=tmp_path / "model.safetensors")
    assert "\n" not in str(info.value)


def test_offline_without_cache_names_the_weights():
    with pytest.raises(VitbenchError) as info:
        vitbench.load("eva02_l")
    message = str(info.value)
    assert "timm/eva02_large_patch14_224.mim_m38m" in message
    assert "MB" in message and "--weights" in message and "\n" not in message


def test_missing_path_and_unknown_names():
    with pytest.raises(VitbenchError, match="does not exist"):
        vitbench.load("test_vit", pretrained="/no/such/weights.safetensors")
    with pytest.raises(KeyError, match="closest: vit_s16"):
        vitbench.load("vit_s61")
    with pytest.raises(VitbenchError, match="accepted: device, dtype, resolution, tag"):
        vitbench.load("test_vit", pretrained=False, colour="red")


def test_hub_cache_is_used_when_present(tmp_path, monkeypatch):
    """Weights in the Hugging Face cache layout load offline, and the commit pins identity."""
    import timm
    from huggingface_hub import constants

    torch.manual_seed(5)
    model = timm.create_model("test_vit.r160_in1k", pretrained=False).eval()
    repo = tmp_path / "models--timm--test_vit.r160_in1k"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    save_file(model.state_dict(), snapshot / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    encoder = vitbench.load("test_vit")  # pretrained=True: the published tag, from the cache
    assert encoder.loaded.kind == "hub" and encoder.loaded.identity.endswith("a" * 40)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(encoder.encode_image(x).pooled, want)


def test_resolution_override_interpolates_position_embeddings(tmp_path):
    import timm

    torch.manual_seed(9)
    model = timm.create_model("test_vit.r160_in1k", pretrained=False)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    encoder = vitbench.load("test_vit", pretrained=tmp_path, resolution=64)
    want = timm.create_model("test_vit.r160_in1k", pretrained=True, img_size=64,
                             pretrained_cfg_overlay={"file": str(tmp_path / "model.safetensors")})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = want.eval().forward_head(want.forward_features(x), pre_logits=True)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.pooled, expected)
    assert got.tokens.shape == (2, 16, 64) and encoder.transform(_image()).shape == (3, 64, 64)


def test_encode_batches_pil_images_and_datasets():
    from vitbench.data import get_dataset

    encoder = vitbench.load("test_vit", pretrained=False, resolution=32)
    dataset = get_dataset("digits", "test")
    images = [dataset.image(i) for i in range(10)]
    direct = encoder.encode_image(torch.stack([encoder.transform(im) for im in images]))
    batched = encoder.encode(images, batch_size=3)
    torch.testing.assert_close(batched.pooled, direct.pooled)
    torch.testing.assert_close(batched.tokens, direct.tokens)
    whole = encoder.encode(dataset, batch_size=128)
    assert whole.pooled.shape == (len(dataset), 64)
    torch.testing.assert_close(whole.pooled[:10], direct.pooled)


def test_tokens_false_skips_only_the_tokens():
    encoder = vitbench.load("test_vit", pretrained=False, resolution=32)
    x = torch.randn(2, 3, 32, 32)
    full, lean = encoder.encode_image(x), encoder.encode_image(x, tokens=False)
    assert lean.tokens is None and full.tokens is not None
    torch.testing.assert_close(lean.pooled, full.pooled)


def test_zoo_vit_takes_smaller_crops_and_matches_timm_at_its_size():
    """Built with timm's dynamic_img_size (DINO's local crops are half the global side);
    at the built size the outputs are timm's own."""
    import timm

    encoder = vitbench.load("vit_t16", pretrained=False)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    model.load_state_dict(encoder.model.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(encoder.encode_image(x).pooled, expected)
    assert encoder.encode_image(torch.randn(1, 3, 96, 96)).tokens.shape == (1, 36, 192)


def test_bf16_autocast_is_close_to_fp32():
    x = torch.randn(2, 3, 64, 64)
    fp32 = vitbench.load("test_vit", pretrained=False, resolution=64).encode_image(x).pooled
    bf16 = vitbench.load("test_vit", pretrained=False, resolution=64, dtype="bf16")
    out = bf16.encode_image(x).pooled
    assert out.dtype == torch.float32  # features always come back as fp32
    cos = torch.nn.functional.cosine_similarity(out, fp32).min()
    assert cos > 0.99 and not torch.equal(out, fp32)


def test_pixels_baseline_is_the_image():
    encoder = vitbench.load("pixels", resolution=8)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    feats = encoder.encode_image(x)
    torch.testing.assert_close(feats.pooled, x.reshape(2, -1))
    # token 0 = the top-left 4x4 patch of every channel
    torch.testing.assert_close(feats.tokens[:, 0], x[:, :, :4, :4].reshape(2, -1))
