"""Per-layer features and pooling views: equal to running the backend's blocks by hand."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vitbench
from vitbench.cli import app
from vitbench.errors import VitbenchError
from vitbench.features import FeatureView


def _by_hand(model, x, block):
    """Class token and patch tokens after `block`, through the final norm (timm ViT)."""
    h = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    for b in model.blocks[:block + 1]:
        h = b(h)
    h = model.norm(h)
    return h[:, 0], h[:, model.num_prefix_tokens:]


def test_layers_equal_the_backend_blocks_and_leave_final_features_alone():
    encoder = vitbench.load("test_vit", pretrained=False, resolution=32)
    x = torch.randn(3, 3, 32, 32)
    plain = encoder.encode_image(x)
    feats = encoder.encode_image(x, layers=[-1, 2])
    assert [layer.index for layer in feats.layers] == [-1, 2] and plain.layers == ()
    torch.testing.assert_close(feats.pooled, plain.pooled)
    with torch.no_grad():
        for layer, block in zip(feats.layers, (len(encoder.model.blocks) - 1, 2), strict=True):
            cls, tokens = _by_hand(encoder.model, x, block)
            torch.testing.assert_close(layer.cls, cls, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(layer.tokens, tokens, rtol=1e-5, atol=1e-5)


def test_views_concatenate_the_pooled_layers():
    encoder = vitbench.load("test_vit", pretrained=False, resolution=32)
    feats = encoder.encode_image(torch.randn(2, 3, 32, 32), layers=[-2, -1])
    view = FeatureView.parse("cls+mean@-2,-1")
    a, b = feats.layers
    want = torch.cat([a.cls, a.tokens.mean(1), b.cls, b.tokens.mean(1)], dim=1)
    torch.testing.assert_close(view.select(feats, "test_vit"), want)
    assert FeatureView.parse("mean") == FeatureView("mean", (-1,))
    assert FeatureView.parse("pooled") is None
    for bad in ("max@-1", "cls@x", "cls@"):
        with pytest.raises(VitbenchError, match="accepted"):
            FeatureView.parse(bad)


def test_open_clip_layers_equal_its_blocks_by_hand():
    encoder = vitbench.load("clip_b32", pretrained=False, resolution=64)
    visual = encoder.model.visual
    x = torch.randn(2, 3, 64, 64)
    feats = encoder.encode_image(x, layers=[3, -1])
    torch.testing.assert_close(feats.pooled, encoder.encode_image(x).pooled)
    with torch.no_grad():
        h = visual.ln_pre(torch.cat([visual.class_embedding.expand(2, 1, -1),
                                     visual.conv1(x).flatten(2).transpose(1, 2)], dim=1)
                          + visual.positional_embedding)
        by_block = []
        for block in visual.transformer.resblocks:
            h = block(h)
            by_block.append(visual.ln_post(h))
    for layer, block in zip(feats.layers, (3, 11), strict=True):
        torch.testing.assert_close(layer.cls, by_block[block][:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.tokens, by_block[block][:, 1:], rtol=1e-5, atol=1e-5)
    # the last block's patch tokens are the final tokens
    torch.testing.assert_close(feats.layers[1].tokens, feats.tokens, rtol=1e-5, atol=1e-5)


def test_layers_outside_the_model_or_backend_are_clear_errors():
    with pytest.raises(VitbenchError, match="block indices"):
        vitbench.load("test_vit", pretrained=False).encode_image(torch.randn(1, 3, 160, 160),
                                                                 layers=[12])
    with pytest.raises(VitbenchError, match="hierarchical"):
        vitbench.load("convnext_t", pretrained=False, resolution=32).encode_image(
            torch.randn(1, 3, 32, 32), layers=[-1])
    with pytest.raises(VitbenchError, match="not for this open_clip architecture"):
        vitbench.load("clip_rn50", pretrained=False).encode_image(torch.randn(1, 3, 224, 224),
                                                                  layers=[-1])


def test_cli_layers_and_pooling_are_recorded(tmp_path):
    out = tmp_path / "r.csv"
    result = CliRunner().invoke(app, ["eval", "--model", "test_vit", "--task", "digits_knn",
                                      "--weights", "random", "--layers=-2,-1", "--pooling",
                                      "cls+mean", "--out", str(out), "--cache-dir",
                                      str(tmp_path / "c")])
    assert result.exit_code == 0, result.stderr
    import pandas as pd

    rows = pd.read_csv(out)
    assert '"feature": "cls+mean@-2,-1"' in rows.settings[0]
    assert np.isfinite(rows.value).all() and (rows.value > 10).all()
