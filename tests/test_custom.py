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


# -- your own factory (`module:callable`) and installed entry points ----------------------------

NET = '''
import torch
import vitbench


class Net(torch.nn.Module):
    """A module vitbench knows nothing about: (B, 3, H, W) -> (B, 6)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, 4)
        self.fc = torch.nn.Linear(8, 6)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


FACTS = {"input_size": 32, "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2),
         "supervision": "self", "paper": "mine"}


def make_encoder(pretrained: bool = True):
    net = Net()
    if pretrained:  # "my own weights": a fixed, recognisable tensor
        torch.nn.init.constant_(net.fc.bias, 0.5)
    return net, FACTS


def make_timm(pretrained: bool = True):
    import timm
    return timm.create_model("test_vit", pretrained=False)


def make_zoo(resolution: int = 64):
    return vitbench.load("test_vit", pretrained=False, resolution=resolution)


def no_facts(pretrained: bool = True):
    return Net()


def no_pretrained_arg():
    return Net(), FACTS


def not_a_model():
    return "a string"


def odd_fact():
    return Net(), {**FACTS, "colour": "red"}


def boom():
    raise RuntimeError("boom")


class Tokens(Net):
    def forward(self, x):
        return self.conv(x).flatten(2).transpose(1, 2)


def tokens_out():
    return Tokens(), FACTS
'''


def _user_module(tmp_path, monkeypatch, name: str) -> str:
    """Write the user's module as `name.py` in tmp_path and put it on sys.path."""
    (tmp_path / f"{name}.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_factory_module_with_facts_runs_its_forward(tmp_path, monkeypatch):
    import importlib

    mod = _user_module(tmp_path, monkeypatch, "byo_factory_facts")
    user = importlib.import_module(mod)
    torch.manual_seed(21)
    net = user.Net().eval()
    save_file(net.state_dict(), tmp_path / "model.safetensors")
    encoder = vitbench.load(f"{mod}:make_encoder", pretrained=tmp_path / "model.safetensors")
    spec = encoder.spec
    assert (spec.backend, spec.backend_id, spec.input_size, spec.embed_dim) == (
        "factory", f"{mod}:make_encoder", 32, 6)
    assert spec.mean == (0.5, 0.4, 0.3) and spec.supervision is Supervision.SELF
    assert spec.params_m == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6,
                                          abs=0.01)
    assert not spec.dynamic_resolution and encoder.loaded.kind == "file"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = net(x)
    torch.testing.assert_close(encoder.encode_image(x).pooled, want)
    # pretrained=True: the factory's own weights; False: random ones; both identified by content
    own = vitbench.load(f"{mod}:make_encoder")
    assert own.loaded.kind == "factory" and torch.equal(own.model.fc.bias, torch.full((6,), 0.5))
    random = vitbench.load(f"{mod}:make_encoder", pretrained=False)
    assert random.loaded.kind == "random" and own.loaded.identity != random.loaded.identity
    assert vitbench.load(f"{mod}:make_encoder").loaded.identity == own.loaded.identity
    with pytest.raises(VitbenchError, match="runs at 32 px"):
        vitbench.load(f"{mod}:make_encoder", resolution=64)


def test_factory_returning_a_timm_model_gives_pre_logits_and_derived_facts(tmp_path, monkeypatch):
    import timm

    mod = _user_module(tmp_path, monkeypatch, "byo_factory_timm")
    torch.manual_seed(22)
    model = timm.create_model("test_vit", pretrained=False).eval()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    encoder = vitbench.load(f"{mod}:make_timm", pretrained=tmp_path)
    cfg = model.pretrained_cfg
    assert (encoder.spec.input_size, encoder.spec.mean, encoder.spec.patch_size) == (
        cfg["input_size"][-1], tuple(cfg["mean"]), model.patch_embed.patch_size[0])
    assert encoder.spec.embed_dim == model.num_features
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        feats = model.forward_features(x)
        want = model.forward_head(feats, pre_logits=True)
    got = encoder.encode_image(x, layers=[-1])
    torch.testing.assert_close(got.pooled, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.tokens, feats[:, model.num_prefix_tokens:], rtol=1e-5,
                               atol=1e-5)
    assert got.layers[0].cls.shape == (1, model.num_features)


def test_factory_returning_an_encoder_is_renamed_and_takes_resolution(tmp_path, monkeypatch):
    mod = _user_module(tmp_path, monkeypatch, "byo_factory_zoo")
    encoder = vitbench.load(f"{mod}:make_zoo")
    spec = encoder.spec
    assert (spec.name, spec.backend, spec.input_size, spec.embed_dim) == (
        f"{mod}:make_zoo", "factory", 64, 64)
    assert spec.dynamic_resolution and spec.family == "vit"
    x = torch.randn(2, 3, 64, 64)
    want = vitbench.load("test_vit", pretrained=False, resolution=64).encode_image(x)
    torch.testing.assert_close(encoder.encode_image(x).pooled, want.pooled)
    assert vitbench.load(f"{mod}:make_zoo", resolution=32).encode_image(
        torch.randn(1, 3, 32, 32)).tokens.shape == (1, 4, 64)


def test_factory_mistakes_are_one_line_errors(tmp_path, monkeypatch):
    mod = _user_module(tmp_path, monkeypatch, "byo_factory_errors")
    cases = {
        "no_facts": "cannot derive input_size, mean, std from the Net",
        "no_pretrained_arg": "takes no `pretrained` argument",
        "not_a_model": "returned a str",
        "odd_fact": "accepted: crop_pct",
        "boom": r"failed \(RuntimeError: boom\)",
        "tokens_out": r"returned shape \(1, 64, 8\)",
        "missing": "has no callable 'missing'",
    }
    for function, message in cases.items():
        with pytest.raises(VitbenchError, match=message) as info:
            vitbench.load(f"{mod}:{function}", pretrained=False)
        assert "\n" not in str(info.value), function
    with pytest.raises(VitbenchError, match="return \\(module, \\{'input_size': ..."):
        vitbench.load(f"{mod}:no_facts", pretrained=False)
    with pytest.raises(VitbenchError, match="cannot import 'no_such_pkg_xyz.mod'.*mod.*:callable"):
        vitbench.load("no_such_pkg_xyz.mod:make", pretrained=False)


def test_entry_point_names_a_factory(tmp_path, monkeypatch):
    mod = _user_module(tmp_path, monkeypatch, "byo_entry_point")
    dist = tmp_path / "byo_entry_point-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: byo-entry-point\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[vitbench.encoders]\nbyo_ep_encoder = {mod}:make_encoder\n")
    encoder = vitbench.load("byo_ep_encoder", pretrained=False)
    assert encoder.spec.name == "byo_ep_encoder"
    assert encoder.spec.backend_id == f"{mod}:make_encoder"
    direct = vitbench.load(f"{mod}:make_encoder", pretrained=False)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(encoder.encode_image(x).pooled, direct.encode_image(x).pooled)
    with pytest.raises(KeyError, match="unknown model 'byo_ep_encoderr'"):
        vitbench.load("byo_ep_encoderr")


def test_cli_evaluates_a_factory(tmp_path, monkeypatch):
    mod = _user_module(tmp_path, monkeypatch, "byo_factory_cli")
    result = CliRunner().invoke(app, ["eval", "--model", f"{mod}:make_encoder", "--task",
                                      "digits_knn", "--weights", "random",
                                      "--out", str(tmp_path / "r.csv"),
                                      "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.stderr
    assert f"{mod}:make_encoder" in result.stdout
    bad = CliRunner().invoke(app, ["eval", "--model", f"{mod}:no_facts", "--task", "digits_knn"])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    assert "cannot derive input_size" in bad.stderr
