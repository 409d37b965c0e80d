"""iBOT (timm's ViT reading iBOT's checkpoint keys) and TAP (a reference implementation).

Both load through vitbench from files in the official key layouts, made here from random
models by the inverse of `convert`, written out below; outputs are checked against timm's own
ViT (iBOT) and against TAP's encoder computed by hand, window by window (TAP). Full sizes only
on the meta device.
"""

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import vitbench
from vitbench.errors import VitbenchError
from vitbench.zoo.reference.ibot import IBotViT
from vitbench.zoo.reference.tap import TapImageEncoder
from vitbench.zoo.registry import Entry, build, get_entry
from vitbench.zoo.weights import WeightsRequest

IBOT_TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)
TAP_TINY = dict(depth=4, embed_dim=32, num_heads=2, img_size=64, window_size=2)
TAP_OUT = 256  # the neck's width, as registered


def _tiny(name: str, size: int, patch: int, kwargs: dict) -> Entry:
    """The registered entry with a tiny architecture: same adapter, convert and load path."""
    entry = get_entry(name)
    return Entry(replace(entry.spec, input_size=size, patch_size=patch),
                 {**entry.build_args, "kwargs": {**kwargs, "img_size": size}})


def _load(entry: Entry, path, resolution=None):
    return build(entry, WeightsRequest("file", tag=path.name, path=path), resolution)


# -- iBOT ---------------------------------------------------------------------------------------

def _timm_vit(seed: int, size: int = 32, state=None):
    import timm

    torch.manual_seed(seed)
    extra = {} if state is None else dict(pretrained=True,
                                          pretrained_cfg_overlay={"state_dict": state})
    return timm.create_model("vit_small_patch16_224", num_classes=0, img_size=size,
                             **IBOT_TINY, **extra).eval()


def _ibot_official(timm_state: dict, layout: str) -> dict:
    """timm keys -> an official iBOT file: the released teacher backbone, a backbone pulled
    from a full checkpoint (`backbone.` prefix, DDP's `module.`), a student's, or the whole
    training checkpoint, each with the projection head beside it (and the [MASK] token)."""
    if layout == "full":  # {"student": ..., "teacher": ..., "epoch": ...}; a shuffled student
        student = {k: v[torch.randperm(len(v))] if v.ndim else v for k, v in timm_state.items()}
        return {"student": _ibot_official(student, "student")["state_dict"], "epoch": 100,
                "teacher": _ibot_official(timm_state, "extracted")["state_dict"]}
    prefix = {"teacher": "", "extracted": "backbone.", "student": "module.backbone."}[layout]
    state = {prefix + k: v.clone() for k, v in timm_state.items()}
    head = {"mlp.0.weight": (64, 32), "mlp.0.bias": (64,), "mlp.2.weight": (16, 64),
            "last_layer.weight_g": (40, 1), "last_layer.weight_v": (40, 16),
            "last_layer2.weight_g": (40, 1), "last_layer2.weight_v": (40, 16)}
    head_prefix = "head." if layout == "teacher" else prefix.replace("backbone.", "head.")
    state.update({head_prefix + k: torch.randn(shape) for k, shape in head.items()})
    if layout == "student":
        state[prefix + "masked_embed"] = torch.randn(1, 32)
    return {"state_dict": state}


def _timm_features(model, x):
    with torch.no_grad():
        feats = model.forward_features(x)
        return model.forward_head(feats, pre_logits=True), feats[:, model.num_prefix_tokens:]


@pytest.mark.parametrize("layout", ["teacher", "extracted", "student", "full"])
def test_ibot_official_checkpoint_equals_timm_vit(tmp_path, layout):
    model = _timm_vit(3)
    torch.save(_ibot_official(model.state_dict(), layout), tmp_path / "checkpoint_teacher.pth")
    encoder = _load(_tiny("ibot_s16", 32, 8, IBOT_TINY), tmp_path)  # the directory
    x = torch.randn(2, 3, 32, 32)
    pooled, tokens = _timm_features(model, x)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.pooled, pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.tokens, tokens, rtol=1e-5, atol=1e-5)
    assert encoder.loaded.kind == "file" and got.pooled.shape == (2, 32)


def test_ibot_own_layout_and_another_resolution(tmp_path):
    model = _timm_vit(4)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    entry = _tiny("ibot_s16", 32, 8, IBOT_TINY)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(_load(entry, tmp_path).encode_image(x).pooled,
                               _timm_features(model, x)[0], rtol=1e-5, atol=1e-5)
    # at 48 px the 4x4 position grid is resampled as timm resamples it when it loads
    resampled = _timm_vit(5, size=48, state=model.state_dict())
    x = torch.randn(2, 3, 48, 48)
    got = _load(entry, tmp_path, resolution=48).encode_image(x)
    pooled, tokens = _timm_features(resampled, x)
    torch.testing.assert_close(got.pooled, pooled, rtol=1e-5, atol=1e-5)
    assert got.tokens.shape == tokens.shape == (2, 36, 32)


def test_ibot_layers_equal_the_blocks_run_by_hand(tmp_path):
    model = _timm_vit(6)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    encoder = _load(_tiny("ibot_s16", 32, 8, IBOT_TINY), tmp_path)
    x = torch.randn(2, 3, 32, 32)
    feats = encoder.encode_image(x, layers=[0, -1])
    with torch.no_grad():
        h = model._pos_embed(model.patch_embed(x))
        by_hand = []
        for block in model.blocks:
            h = block(h)
            by_hand.append(model.norm(h))
    for layer, block in zip(feats.layers, (0, 1), strict=True):
        torch.testing.assert_close(layer.cls, by_hand[block][:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.tokens, by_hand[block][:, 1:], rtol=1e-5, atol=1e-5)
    with pytest.raises(VitbenchError, match="block indices"):
        encoder.encode_image(x, layers=[2])


@pytest.mark.parametrize("name", ["ibot_s16", "ibot_b16", "ibot_l16"])
def test_ibot_architectures_are_timms(name):
    import timm

    entry = get_entry(name)
    with torch.device("meta"):
        ours = IBotViT(**entry.build_args["kwargs"])
        theirs = timm.create_model(entry.spec.backend_id, num_classes=0)
    assert ({k: v.shape for k, v in ours.state_dict().items()}
            == {k: v.shape for k, v in theirs.state_dict().items()})
    assert sum(p.numel() for p in theirs.parameters()) / 1e6 == pytest.approx(
        entry.spec.params_m, abs=0.01)


def test_ibot_errors_are_one_line(tmp_path):
    state = _ibot_official(_timm_vit(7).state_dict(), "teacher")
    del state["state_dict"]["blocks.1.mlp.fc2.bias"]
    torch.save(state, tmp_path / "checkpoint_teacher.pth")
    with pytest.raises(VitbenchError, match="do not fit") as info:
        _load(_tiny("ibot_s16", 32, 8, IBOT_TINY), tmp_path)
    with pytest.raises(VitbenchError, match="not on the Hugging Face hub") as offline:
        vitbench.load("ibot_b16")
    assert "\n" not in str(info.value) + str(offline.value)
    assert "checkpoint_teacher.pth" in get_entry("ibot_b16").spec.notes


# -- TAP ----------------------------------------------------------------------------------------

def _tap_model(seed: int) -> TapImageEncoder:
    """A tiny TAP encoder with every tensor random, BatchNorm statistics included."""
    torch.manual_seed(seed)
    model = TapImageEncoder(**TAP_TINY)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key
                            else torch.randn_like(value) * 0.2)
    return model.eval()


def _official_index(window: int) -> torch.Tensor:
    """TAP's relative-position index buffer, as its RelPosEmbed.get_index builds it."""
    n = window * window
    index = torch.empty(n, n, dtype=torch.long)
    for i in range(n):
        for j in range(n):
            dy = i // window - j // window + window - 1
            dx = i % window - j % window + window - 1
            index[i, j] = dy * (2 * window - 1) + dx
    return index


def _tap_official(own: dict) -> dict:
    """Our keys -> the whole official TAP model: `image_encoder.` prefix, the index buffers,
    and the other components' keys the file carries."""
    state = {"image_encoder." + k: v.clone() for k, v in own.items()}
    for block in range(TAP_TINY["depth"]):
        key = f"image_encoder.blocks.{block}.attn.rel_pos_embed.index"
        state[key] = _official_index(TAP_TINY["window_size"])
    for key in ("prompt_encoder.point_embed.weight", "image_decoder.mask_tokens.weight",
                "text_decoder.tok_embeddings.weight", "concept_projector.weight"):
        state[key] = torch.randn(3, 4)
    state["pixel_mean"], state["pixel_rsig"] = torch.randn(3), torch.randn(3)
    return state


def _bn(x, s, prefix):
    return F.batch_norm(x, s[prefix + "running_mean"], s[prefix + "running_var"],
                        s[prefix + "weight"], s[prefix + "bias"], False, 0.0, 1e-5)


def _tap_by_hand(official: dict, x: torch.Tensor) -> torch.Tensor:
    """TAP's image encoder from the official keys, one window and one head at a time, on the
    image's own token grid; returns the neck's (B, C, h, w) map."""
    s = {k.removeprefix("image_encoder."): v for k, v in official.items()
         if k.startswith("image_encoder.")}
    depth, dim, heads, win = (TAP_TINY[k] for k in ("depth", "embed_dim", "num_heads",
                                                     "window_size"))
    x = x[:, [2, 1, 0]]  # TAP reads BGR
    grid = F.conv2d(x, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=16)
    b, _, rows, cols = grid.shape
    h = grid.flatten(2).transpose(1, 2) + s["pos_embed.weight"]  # (B, rows*cols, D)
    for i in range(depth):
        p = f"blocks.{i}."
        y = F.layer_norm(h, (dim,), s[p + "norm1.weight"], s[p + "norm1.bias"])
        qkv = F.linear(y, s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"])
        attended = torch.zeros_like(h)
        table = s[p + "attn.rel_pos_embed.weight"]
        for wy in range(0, rows, win):
            for wx in range(0, cols, win):
                cells = [(wy + r, wx + c) for r in range(win) for c in range(win)]
                idx = [r * cols + c for r, c in cells]
                bias = torch.tensor([[[table[hd, (ri - rj + win - 1) * (2 * win - 1)
                                             + (ci - cj + win - 1)].item()
                                       for (rj, cj) in cells] for (ri, ci) in cells]
                                     for hd in range(heads)])
                q, k, v = qkv[:, idx].chunk(3, dim=-1)
                outs = []
                for hd in range(heads):
                    part = slice(hd * dim // heads, (hd + 1) * dim // heads)
                    logits = q[..., part] @ k[..., part].transpose(1, 2) / (dim // heads) ** 0.5
                    outs.append((logits + bias[hd]).softmax(-1) @ v[..., part])
                attended[:, idx] = torch.cat(outs, -1)
        h = h + F.linear(attended, s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
        y = F.layer_norm(h, (dim,), s[p + "norm2.weight"], s[p + "norm2.bias"])
        y = F.linear(F.gelu(F.linear(y, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"])),
                     s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"])
        h = h + y
        if (i + 1) % (depth // 4) == 0:  # a bottleneck across windows after every depth/4
            if i == depth - 1:
                h = F.layer_norm(h, (dim,), s["norm.weight"], s["norm.bias"])
            m = h.transpose(1, 2).reshape(b, dim, rows, cols)
            c = f"cross_conv.{(i + 1) // (depth // 4) - 1}."
            y = F.gelu(_bn(F.conv2d(m, s[c + "conv1.weight"]), s, c + "norm1."))
            y = F.gelu(_bn(F.conv2d(y, s[c + "conv2.weight"], padding=1), s, c + "norm2."))
            m = m + _bn(F.conv2d(y, s[c + "conv3.weight"]), s, c + "norm3.")
            h = m.flatten(2).transpose(1, 2)
    y = _bn(F.conv2d(m, s["neck.lateral_conv.0.0.weight"]), s, "neck.lateral_conv.0.1.")
    return _bn(F.conv2d(y, s["neck.output_conv.0.0.weight"], padding=1), s,
               "neck.output_conv.0.1.")


def test_tap_official_checkpoint_equals_the_encoder_by_hand(tmp_path):
    official = _tap_official(_tap_model(1).state_dict())
    torch.save(official, tmp_path / "tap_vit_l_tiny.pth")
    encoder = _load(_tiny("tap_l", 64, 16, TAP_TINY), tmp_path / "tap_vit_l_tiny.pth")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = _tap_by_hand(official, x).flatten(2).transpose(1, 2)
    got = encoder.encode_image(x)
    assert got.tokens.shape == (2, 16, TAP_OUT)
    torch.testing.assert_close(got.tokens, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.pooled, want.mean(1), rtol=1e-4, atol=1e-4)


def test_tap_convert_round_trip_and_own_layout(tmp_path):
    model = _tap_model(2)
    own = model.state_dict()
    for state in (TapImageEncoder.convert(_tap_official(own)), TapImageEncoder.convert(own)):
        assert state.keys() == own.keys()
        assert all(torch.equal(state[k], own[k]) for k in own)
    save_file(own, tmp_path / "model.safetensors")
    encoder = _load(_tiny("tap_l", 64, 16, TAP_TINY), tmp_path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = model.forward_image(x).tokens
    torch.testing.assert_close(encoder.encode_image(x).tokens, want)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, on the .pkl refused
def test_tap_errors_are_one_line(tmp_path):
    entry = _tiny("tap_l", 64, 16, TAP_TINY)
    own = _tap_model(3).state_dict()
    arrays = {"image_encoder." + k: v.numpy() for k, v in own.items()}
    with open(tmp_path / "tap_vit_l_v1_1.pkl", "wb") as f:  # the hub's format: numpy pickle
        pickle.dump(arrays, f)
    messages = []
    with pytest.raises(VitbenchError, match="safetensors") as info:
        _load(entry, tmp_path / "tap_vit_l_v1_1.pkl")
    messages.append(str(info.value))
    del own["neck.output_conv.0.1.running_var"]
    save_file(own, tmp_path / "model.safetensors")
    with pytest.raises(VitbenchError, match="do not fit") as info:
        _load(entry, tmp_path / "model.safetensors")
    messages.append(str(info.value))
    for bad in (dict(resolution=48), dict(layers=[0])):
        with pytest.raises(VitbenchError) as info:
            encoder = build(entry, WeightsRequest("random", "random"), bad.get("resolution"))
            encoder.encode_image(torch.randn(1, 3, 64, 64), layers=bad.get("layers", ()))
        messages.append(str(info.value))
    assert "fixed input size" in messages[2] and "per-layer" in messages[3]
    assert all("\n" not in m for m in messages)
    assert np.isfinite(get_entry("tap_l").spec.gflops)
