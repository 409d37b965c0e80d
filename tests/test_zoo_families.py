"""Family-level behaviour that tests/test_zoo.py's registry-wide parity and facts do not cover:
every name the zoo issue promises is registered, preprocessing equals the backend's own,
resolution overrides behave as each spec says, and open_clip text towers equal open_clip."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import vitbench
from vitbench.errors import VitbenchError
from vitbench.zoo.registry import get_entry, list_models
from vitbench.zoo.transforms import make_transform

PROMISED = {  # family -> the entry names the zoo issue promises (names are the public API)
    "vit": "vit_t16 vit_s16 vit_b16 vit_b32 vit_l16 vit_h14",
    "deit": "deit_t16 deit_s16 deit_b16", "deit3": "deit3_s16 deit3_b16 deit3_l16",
    "swin": "swin_t swin_s swin_b swin_l", "convnext": "convnext_t convnext_b",
    "inceptionnext": "inceptionnext_t", "focalnet": "focalnet_t", "maxvit": "maxvit_t",
    "vim": "vim_t vim_s",
    "clip": "clip_rn50 clip_b32 clip_b16 clip_l14 clip_l14_336",
    "openclip": "openclip_b32 openclip_b16 openclip_l14 openclip_h14 openclip_g14 "
                "openclip_bigg14",
    "metaclip": "metaclip_b32 metaclip_b16 metaclip_l14 metaclip_h14",
    "dfn": "dfn_b16 dfn_l14 dfn_h14 dfn_h14_378",
    "evaclip": "evaclip_b16 evaclip_l14 evaclip_l14_336 evaclip_g14 evaclip_e14",
    "siglip": "siglip_b16 siglip_b16_256 siglip_b16_384 siglip_b16_512 siglip_l16_256 "
              "siglip_l16_384 siglip_so400m14",
    "siglip2": "siglip2_b16 siglip2_l16_256 siglip2_so400m14 siglip2_g16_256",
    "coca": "coca_b32 coca_l14", "flip": "flip_l14", "navit": "navit_b16",
    "albef": "albef_b16", "blip": "blip_b16 blip_l16", "vlmo": "vlmo_b16",
    "beit3": "beit3_b16 beit3_l16", "mode": "mode_b16",
    "mae": "mae_b16 mae_l16 mae_h14", "beit": "beit_b16 beit_l16",
    "beitv2": "beitv2_b16 beitv2_l16", "dino": "dino_s16 dino_s8 dino_b16 dino_b8",
    "ibot": "ibot_s16 ibot_b16 ibot_l16",
    "dinov2": "dinov2_s14 dinov2_b14 dinov2_l14 dinov2_g14 dinov2_s14_reg dinov2_b14_reg "
              "dinov2_l14_reg dinov2_g14_reg",
    "eva": "eva_g14", "eva02": "eva02_t eva02_s eva02_b eva02_l",
    "sam": "sam_b sam_l sam_h", "tap": "tap_l", "pixels": "pixels",
}


@pytest.mark.parametrize("family", PROMISED)
def test_every_promised_entry_is_registered_with_its_facts(family):
    registered = {s.name: s for s in list_models(family=family)}
    missing = set(PROMISED[family].split()) - set(registered)
    assert not missing, f"{family}: {sorted(missing)} not registered"
    for name in PROMISED[family].split():
        spec = registered[name]
        assert spec.paper and spec.pretraining_data and spec.input_size > 0, name
        if spec.backend != "pixels":
            assert spec.paper.startswith("arXiv:") and spec.license, name


def _image(seed=0, size=(97, 131)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


# NaViT keeps each image's aspect ratio: tests/test_zoo_navit.py checks its transform
# (entries without published weights have no pretrained cfg to agree with)
TIMM = [s.name for s in list_models(backend="timm") if s.family != "navit" and s.weights.tag]


@pytest.mark.parametrize("name", TIMM)
def test_transform_equals_timm_pretrained_cfg(name):
    """crop_pct, squash, interpolation and mean/std as timm would preprocess."""
    from timm.data import create_transform, resolve_data_config
    from timm.models import get_pretrained_cfg

    spec = get_entry(name).spec
    cfg = get_pretrained_cfg(f"{spec.backend_id}.{spec.weights.tag}").to_dict()
    theirs = create_transform(**resolve_data_config(pretrained_cfg=cfg))
    image = _image(TIMM.index(name))
    torch.testing.assert_close(make_transform(spec, spec.input_size)(image), theirs(image))


@pytest.mark.parametrize("name", [s.name for s in list_models(backend="open_clip")])
def test_transform_equals_open_clip(name):
    import open_clip

    spec = get_entry(name).spec
    cfg = open_clip.get_pretrained_cfg(spec.backend_id, spec.weights.tag) or {}
    theirs = open_clip.image_transform(spec.input_size, is_train=False, mean=spec.mean,
                                       std=spec.std,
                                       resize_mode=cfg.get("resize_mode", "shortest"),
                                       interpolation=cfg.get("interpolation", "bicubic"))
    image = _image(3)
    torch.testing.assert_close(make_transform(spec, spec.input_size)(image), theirs(image))


def _saved_timm(name, directory):
    import timm

    spec = get_entry(name).spec
    torch.manual_seed(1234)
    model = timm.create_model(f"{spec.backend_id}.{spec.weights.tag}", pretrained=False).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              directory / "model.safetensors")
    return model


# one entry per way position information is stored: class token with its own position
# embedding, without (DeiT III), registers (DINOv2), relative position tables (BEiT)
RESAMPLED = ["vit_t16"] + [pytest.param(n, marks=pytest.mark.slow)
                           for n in ("deit3_s16", "dinov2_s14_reg", "beitv2_b16")]


@pytest.mark.parametrize("name", RESAMPLED)
def test_resolution_override_resamples_only_position_weights(name, tmp_path):
    spec = get_entry(name).spec
    saved = _saved_timm(name, tmp_path).state_dict()
    size = 10 * spec.patch_size
    encoder = vitbench.load(name, pretrained=tmp_path, resolution=size)
    loaded = encoder.model.state_dict()
    resampled = {k for k in saved if loaded[k].shape != saved[k].shape}
    assert resampled and all("pos_embed" in k or "relative_position" in k for k in resampled)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved if k not in resampled)
    got = encoder.encode_image(torch.randn(2, 3, size, size))
    assert got.tokens.shape == (2, 100, spec.embed_dim) and got.pooled.isfinite().all()


@pytest.mark.parametrize("name", ["swin_t", "maxvit_t", "sam_b", "clip_rn50", "evaclip_b16",
                                  "siglip_b16_256"])
def test_fixed_size_entries_refuse_other_resolutions(name):
    with pytest.raises(VitbenchError, match="cannot run at 160 px") as info:
        vitbench.load(name, pretrained=False, resolution=160)
    assert "\n" not in str(info.value)


def test_convnet_resolution_override_only_resizes():
    encoder = vitbench.load("convnext_t", pretrained=False, resolution=64)
    assert encoder.transform(_image()).shape == (3, 64, 64)
    got = encoder.encode_image(torch.randn(1, 3, 64, 64))
    assert got.pooled.shape == (1, 768) and got.tokens.shape == (1, 4, 768)


# -- open_clip text towers ----------------------------------------------------------------

TEXTS = ["a photo of a cat", "a red square"]


@pytest.mark.parametrize("name", ["metaclip_b32", "coca_b32"])
def test_text_tower_equals_open_clip_unnormalised(name):
    """projected images are not normalised (as CLIP's encode_image); texts must not be either,
    though CoCa's encode_text normalises by default."""
    import open_clip

    encoder = vitbench.load(name, pretrained=False, resolution=64 if name != "coca_b32" else None)
    tokens = open_clip.get_tokenizer(encoder.spec.backend_id)(TEXTS)
    with torch.no_grad():
        want = encoder.model.encode_text(tokens, normalize=False)
    got = encoder.encode_text(TEXTS)
    torch.testing.assert_close(got, want)
    assert got.shape == (2, encoder.spec.projection_dim) and not torch.allclose(
        got.norm(dim=-1), torch.ones(2))


def test_hub_tokenizer_offline_is_a_one_line_error():
    """SigLIP's tokenizers come from the hub: offline, images still encode and encode_text
    says in one line what is missing."""
    encoder = vitbench.load("siglip_b16_256", pretrained=False)
    assert encoder.encode_image(torch.randn(1, 3, 256, 256)).projected.shape == (1, 768)
    with pytest.raises(VitbenchError, match="tokenizer") as info:
        encoder.encode_text(["a cat"])
    assert "\n" not in str(info.value)


def test_open_clip_resolution_override_resizes_position_embeddings(tmp_path):
    import open_clip

    torch.manual_seed(2)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    file = tmp_path / "open_clip_model.safetensors"
    save_file(model.state_dict(), file)
    encoder = vitbench.load("metaclip_b32", pretrained=file, resolution=160)
    want = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None,
                                  force_image_size=160).eval()
    open_clip.load_checkpoint(want, str(file))
    x = torch.randn(1, 3, 160, 160)
    got = encoder.encode_image(x)
    with torch.no_grad():
        torch.testing.assert_close(got.projected, want.encode_image(x), rtol=1e-5, atol=1e-5)
    assert got.tokens.shape == (1, 25, 768)
