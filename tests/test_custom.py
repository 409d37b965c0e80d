"""Bring your own encoder: timm:, open_clip: and hf: names get the same contract and parity."""

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app
from vitbench.contract import Supervision
from vitbench.errors import VitbenchError


def test_timm_name_derives_facts_and_loads_saved_weights(tmp_path):
    import timm

    torch.manual_seed(11)
    model = timm.create_model("vit_tiny_patch16_224.augreg_in21k", pretrained=False).eval()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    encoder = vitbench.load("timm:vit_tiny_patch16_224.augreg_in21k", pretrained=tmp_path)
    spec = encoder.spec
    assert spec.params_m == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6,
                                          abs=0.01)
    assert (spec.embed_dim, spec.patch_size, spec.input_size) == (192, 16, 224)
    assert spec.mean == tuple(model.pretrained_cfg["mean"]) and spec.weights.tag == "augreg_in21k"
    assert spec.supervision is Supervision.UNKNOWN
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(encoder.encode_image(x).pooled, want, rtol=1e-5, atol=1e-5)


def test_open_clip_name_matches_encode_image(tmp_path):
    import open_clip

    torch.manual_seed(12)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    save_file(model.state_dict(), tmp_path / "open_clip_model.safetensors")
    encoder = vitbench.load("open_clip:ViT-B-32/laion2b_s34b_b79k",
                            pretrained=tmp_path / "open_clip_model.safetensors")
    assert encoder.spec.weights.hf_hub_id == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert (encoder.spec.embed_dim, encoder.spec.projection_dim) == (768, 512)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = model.encode_image(x)
    torch.testing.assert_close(encoder.encode_image(x).projected, want, rtol=1e-5, atol=1e-5)
    text = encoder.encode_text(["a red circle"])
    assert text.shape == (1, 512)


def _tiny_hf_clip(directory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "vocab_size": 99, "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24)
    torch.manual_seed(13)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                       ).save_pretrained(directory)
    return model


def test_hf_directory_loads_with_its_own_preprocessing(tmp_path):
    from PIL import Image
    from transformers import CLIPImageProcessor

    model = _tiny_hf_clip(tmp_path)
    encoder = vitbench.load(f"hf:{tmp_path}")  # pretrained=True: the directory's weights
    spec = encoder.spec
    assert encoder.loaded.kind == "file" and spec.backend_id == "CLIPModel"
    assert (spec.input_size, spec.patch_size, spec.embed_dim, spec.projection_dim) == (32, 8, 32,
                                                                                       24)
    image = Image.new("RGB", (40, 50), (120, 30, 200))
    theirs = CLIPImageProcessor.from_pretrained(tmp_path)(image, return_tensors="pt")
    torch.testing.assert_close(encoder.transform(image), theirs["pixel_values"][0], atol=2e-2,
                               rtol=0)
    x = theirs["pixel_values"]
    with torch.no_grad():
        want = model.get_image_features(pixel_values=x)
    want = getattr(want, "pooler_output", want)
    torch.testing.assert_close(encoder.encode_image(x).projected, want, rtol=1e-5, atol=1e-5)


def test_hf_without_preprocessor_config_says_what_to_add(tmp_path):
    _tiny_hf_clip(tmp_path)
    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.raises(VitbenchError, match="preprocessor_config.json"):
        vitbench.load(f"hf:{tmp_path}")


def test_bad_custom_names():
    with pytest.raises(KeyError, match="unknown timm model 'vit_tinyy'"):
        vitbench.load("timm:vit_tinyy", pretrained=False)
    with pytest.raises(VitbenchError, match="tags: openai"):
        vitbench.load("open_clip:ViT-B-32/nope", pretrained=False)
    with pytest.raises(VitbenchError, match="neither a local directory"):
        vitbench.load("hf:/no/such/dir")
    with pytest.raises(VitbenchError, match="timm:<name>"):
        vitbench.load("foo:bar")


def test_cli_evaluates_a_timm_model_by_name(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--model", "timm:test_vit", "--task", "digits_knn",
                                      "--weights", "random", "--out", str(tmp_path / "r.csv"),
                                      "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.stderr
    assert "timm:test_vit" in result.stdout
