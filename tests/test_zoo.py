"""Zoo parity: every entry, loaded through vitbench from weights saved on disk in its backend's
format, equals the backend model itself on the same input; and its spec states the facts."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import vitbench
from vitbench.contract import ImageFeatures
from vitbench.errors import VitbenchError
from vitbench.zoo.registry import get_entry, list_models

ENTRIES = [s.name for s in list_models() if s.backend != "pixels"]
GIANT_M = 700  # above this, parity would need tens of GB and minutes: spec facts on meta only


def _parity_param(name):
    """Small entries at small sizes run in the fast suite; big ones are marked slow."""
    spec = get_entry(name).spec
    fast = spec.params_m <= 100 and spec.input_size <= 256
    return pytest.param(name, marks=() if fast else pytest.mark.slow)


PARITY = [_parity_param(n) for n in ENTRIES if get_entry(n).spec.params_m <= GIANT_M]


def _reference(name: str, directory):
    """Build the backend model independently (other seed), save it in the backend's own
    format, and return (path to load, function computing the backend's features)."""
    spec = get_entry(name).spec
    torch.manual_seed(1234)
    if spec.backend == "timm":
        import timm

        model = timm.create_model(f"{spec.backend_id}.{spec.weights.tag}", pretrained=False).eval()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  directory / "model.safetensors")

        def features(x):
            feats = model.forward_features(x)
            return ImageFeatures(model.forward_head(feats, pre_logits=True),
                                 feats[:, model.num_prefix_tokens:])
        return directory, model, features
    if spec.backend == "open_clip":
        import open_clip

        model = open_clip.create_model(spec.backend_id, pretrained=None).eval()
        save_file(model.state_dict(), directory / "open_clip_model.safetensors")

        def features(x):
            projected = model.encode_image(x)
            proj, model.visual.proj = model.visual.proj, None  # the tower's pre-projection output
            model.visual.output_tokens = True
            pooled, tokens = model.visual(x)
            model.visual.proj, model.visual.output_tokens = proj, False
            return ImageFeatures(pooled, tokens, projected)
        return directory / "open_clip_model.safetensors", model, features
    if spec.backend == "transformers":
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.for_model(**get_entry(name).build_args["config"])
        model = AutoModel.from_config(config).eval()
        model.save_pretrained(directory)

        def features(x):
            out = model.vision_model(pixel_values=x)
            projected = model.get_image_features(pixel_values=x)
            projected = getattr(projected, "pooler_output", projected)
            return ImageFeatures(out.pooler_output, out.last_hidden_state, projected)
        return directory, model, features
    raise AssertionError(spec.backend)


@pytest.mark.parametrize("name", PARITY)
def test_loaded_weights_equal_backend(name, tmp_path):
    spec = get_entry(name).spec
    path, _, reference = _reference(name, tmp_path)
    encoder = vitbench.load(name, pretrained=path)
    x = torch.randn(1, 3, spec.input_size, spec.input_size)
    with torch.no_grad():
        want = reference(x)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.pooled, want.pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.tokens, want.tokens, rtol=1e-5, atol=1e-5)
    assert (got.projected is None) == (want.projected is None)
    if want.projected is not None:
        torch.testing.assert_close(got.projected, want.projected, rtol=1e-5, atol=1e-5)
    assert encoder.loaded.kind == "file"
    # the spec's dims are the dims the model produces
    assert got.pooled.shape == (1, spec.embed_dim)
    n_patches = (spec.input_size // spec.patch_size) ** 2
    assert got.tokens.shape[1] == n_patches
    if spec.has_text:
        assert got.projected.shape == (1, spec.projection_dim)


def _meta_backend(spec):
    """The backend's own model, built on the meta device: facts without memory or weights."""
    entry = get_entry(spec.name)
    if spec.backend == "timm":
        import timm

        with torch.device("meta"):
            return timm.create_model(f"{spec.backend_id}.{spec.weights.tag}", pretrained=False)
    if spec.backend == "open_clip":
        import open_clip

        with torch.device("meta"):  # device="meta" alone initialises on the CPU first
            return open_clip.create_model(spec.backend_id, pretrained=None, device="meta",
                                          **entry.build_args)
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        return AutoModel.from_config(AutoConfig.for_model(**entry.build_args["config"]))


@pytest.mark.parametrize("name", ENTRIES)
def test_spec_facts_match_backend(name):
    spec = get_entry(name).spec
    model = _meta_backend(spec)
    tower = model.visual if spec.backend == "open_clip" else getattr(model, "vision_model", model)
    params = sum(p.numel() for p in tower.parameters()) / 1e6
    assert params == pytest.approx(spec.params_m, rel=5e-3)
    if spec.backend == "timm":
        cfg = model.pretrained_cfg
        assert cfg["input_size"][-1] == spec.input_size
        assert tuple(cfg["mean"]) == spec.mean and tuple(cfg["std"]) == spec.std
        assert cfg["crop_pct"] == spec.crop_pct
        assert cfg["hf_hub_id"] == spec.weights.hf_hub_id
        assert model.num_features == spec.embed_dim
    if spec.backend == "open_clip":
        import open_clip

        cfg = open_clip.get_pretrained_cfg(spec.backend_id, spec.weights.tag)
        assert tuple(cfg["mean"]) == spec.mean and tuple(cfg["std"]) == spec.std
        assert cfg["hf_hub"].strip("/") == spec.weights.hf_hub_id
        assert cfg.get("resize_mode", "shortest") == spec.resize_mode


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
