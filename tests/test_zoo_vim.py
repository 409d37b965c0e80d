"""Vision Mamba (zoo/reference/vim.py): the scan against its definition and a closed form, the
whole model against a naive forward written here from the official equations on a state dict
in the official key layout, and the entries' facts and loading paths."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

import vitbench
from vitbench.errors import VitbenchError
from vitbench.zoo.reference.vim import VisionMamba, selective_scan, selective_scan_recurrence
from vitbench.zoo.registry import Entry, build, get_entry
from vitbench.zoo.weights import parse_pretrained

# 24 px / patch 8: an odd number of patches (9), so the middle class token sits at index 4
TINY = dict(img_size=24, patch_size=8, embed_dim=16, depth=3, d_state=4, num_classes=5)


def _scan_inputs(batch=2, length=37, d_inner=5, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, d_inner, generator=g)
    delta = F.softplus(torch.randn(batch, length, d_inner, generator=g))
    A = -torch.rand(d_inner, n, generator=g) * 4
    B, C = torch.randn(2, batch, length, n, generator=g)
    D = torch.randn(d_inner, generator=g)
    return u, delta, A, B, C, D


# -- the selective scan ------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 5, 32, 100])
def test_vectorised_scan_equals_the_recurrence(chunk):
    args = _scan_inputs()
    torch.testing.assert_close(selective_scan(*args, chunk=chunk),
                               selective_scan_recurrence(*args), rtol=1e-5, atol=1e-5)


def test_recurrence_equals_the_closed_form():
    """y_t = sum_{s<=t} sum_n C_tn exp(A_n (delta_{s+1} + ... + delta_t)) delta_s B_sn u_s
    + D u_t: the scan unrolled, in float64, with plain loops."""
    u, delta, A, B, C, D = (t.double() for t in _scan_inputs(batch=1, length=6, d_inner=2, n=2))
    want = torch.zeros_like(u)
    for d in range(2):
        for t in range(6):
            total = D[d] * u[0, t, d]
            for s in range(t + 1):
                for n in range(2):
                    decay = torch.exp(A[d, n] * delta[0, s + 1:t + 1, d].sum())
                    total = total + C[0, t, n] * decay * delta[0, s, d] * B[0, s, n] * u[0, s, d]
            want[0, t, d] = total
    torch.testing.assert_close(selective_scan_recurrence(u, delta, A, B, C, D), want)
    torch.testing.assert_close(selective_scan(u, delta, A, B, C, D, chunk=4), want)


def test_one_step_one_state_formula():
    """L = 1, N = 1: h = delta * B * u (the start state is zero), y = C * h + D * u; and a
    second step decays h by exp(delta_2 * A) first."""
    u, delta, A, B, C, D = (torch.tensor(v).reshape(shape) for v, shape in [
        ([0.7, -1.3], (1, 2, 1)), ([0.4, 0.9], (1, 2, 1)), ([-1.5], (1, 1)),
        ([2.0, 0.5], (1, 2, 1)), ([0.3, -0.8], (1, 2, 1)), ([0.25], (1,))])
    h1 = 0.4 * 2.0 * 0.7
    y1 = 0.3 * h1 + 0.25 * 0.7
    h2 = torch.exp(torch.tensor(0.9 * -1.5)) * h1 + 0.9 * 0.5 * -1.3
    y2 = -0.8 * h2 + 0.25 * -1.3
    want = torch.stack([torch.tensor(y1), y2]).reshape(1, 2, 1)
    for scan in (selective_scan_recurrence, selective_scan):
        torch.testing.assert_close(scan(u, delta, A, B, C, D), want)
        torch.testing.assert_close(scan(u[:, :1], delta[:, :1], A, B[:, :1], C[:, :1], D),
                                   want[:, :1])


# -- the whole model against the official equations --------------------------------------------


def _official_keys(embed_dim, depth, d_state, patch_size, n_patches, num_classes):
    """The official state dict's names and shapes (vim/models_mamba.py VisionMamba, with
    mamba-1p1p1's Mamba(bimamba_type="v2") mixers, RMSNorm, no biases on in/out_proj)."""
    d_inner, dt_rank = 2 * embed_dim, -(-embed_dim // 16)
    shapes = {"patch_embed.proj.weight": (embed_dim, 3, patch_size, patch_size),
              "patch_embed.proj.bias": (embed_dim,), "cls_token": (1, 1, embed_dim),
              "pos_embed": (1, n_patches + 1, embed_dim), "norm_f.weight": (embed_dim,),
              "head.weight": (num_classes, embed_dim), "head.bias": (num_classes,)}
    for i in range(depth):
        block = {"norm.weight": (embed_dim,), "mixer.in_proj.weight": (2 * d_inner, embed_dim),
                 "mixer.out_proj.weight": (embed_dim, d_inner)}
        for suffix in ("", "_b"):
            block.update({
                f"mixer.conv1d{suffix}.weight": (d_inner, 1, 4),
                f"mixer.conv1d{suffix}.bias": (d_inner,),
                f"mixer.x_proj{suffix}.weight": (dt_rank + 2 * d_state, d_inner),
                f"mixer.dt_proj{suffix}.weight": (d_inner, dt_rank),
                f"mixer.dt_proj{suffix}.bias": (d_inner,),
                f"mixer.A{suffix}_log": (d_inner, d_state), f"mixer.D{suffix}": (d_inner,)})
        shapes.update({f"layers.{i}.{k}": v for k, v in block.items()})
    return shapes


def _official_state(seed=0, **cfg):
    """Random tensors, none at an identity init, under the official names."""
    cfg = {**TINY, **cfg}
    n_patches = (cfg["img_size"] // cfg["patch_size"]) ** 2
    shapes = _official_keys(cfg["embed_dim"], cfg["depth"], cfg["d_state"], cfg["patch_size"],
                            n_patches, cfg["num_classes"])
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        fan_in = torch.Size(shape[1:]).numel()
        std = fan_in ** -0.5 if key.endswith(".weight") and len(shape) > 1 else 0.3
        state[key] = std * torch.randn(shape, generator=g)
        if key.endswith("norm.weight") or key == "norm_f.weight":
            state[key] = 1 + state[key]
    return state


def _rms(x, weight, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _naive_direction(xz, conv_w, conv_b, x_proj, dt_w, dt_b, A_log, D):
    """mamba_simple.Mamba, one direction, in its (batch, channels, L) layout."""
    x, z = xz.chunk(2, dim=1)
    length, taps = x.shape[-1], conv_w.shape[-1]
    padded = F.pad(x, (taps - 1, 0))  # causal: output t sees inputs t-3 .. t
    x = F.silu(conv_b[:, None] + sum(conv_w[:, 0, j, None] * padded[..., j:j + length]
                                     for j in range(taps)))
    x_dbl = torch.einsum("rd,bdl->brl", x_proj, x)
    rank, n = dt_w.shape[1], A_log.shape[1]
    dt, B, C = x_dbl.split([rank, n, n], dim=1)
    delta = F.softplus(torch.einsum("dr,brl->bdl", dt_w, dt) + dt_b[:, None])
    A = -torch.exp(A_log)
    h, ys = x.new_zeros(x.shape[0], x.shape[1], n), []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + \
            delta[:, :, t, None] * B[:, None, :, t] * x[:, :, t, None]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return (torch.stack(ys, dim=-1) + D[:, None] * x) * F.silu(z)


def _naive_mixer(sd, p, hidden):
    """bimamba v2 with if_divide_out: both directions share in_proj (and z), averaged."""
    xz = torch.einsum("ed,bld->bel", sd[p + "in_proj.weight"], hidden)

    def direction(xz, s):
        return _naive_direction(xz, sd[f"{p}conv1d{s}.weight"], sd[f"{p}conv1d{s}.bias"],
                                sd[f"{p}x_proj{s}.weight"], sd[f"{p}dt_proj{s}.weight"],
                                sd[f"{p}dt_proj{s}.bias"], sd[f"{p}A{s}_log"], sd[f"{p}D{s}"])
    y = (direction(xz, "") + direction(xz.flip(-1), "_b").flip(-1)) / 2
    return torch.einsum("de,bel->bld", sd[p + "out_proj.weight"], y)


def _naive_vim(sd, pixels, patch, depth):
    """models_mamba.VisionMamba.forward_features (eval, fused add-norm) in float64: returns
    the normed sequence after every block (the last one is the final output)."""
    sd = {k: v.double() for k, v in sd.items()}
    w = sd["patch_embed.proj.weight"]
    grid = pixels.shape[-1] // patch
    patches = pixels.double().reshape(-1, 3, grid, patch, grid, patch)
    patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(-1, grid * grid, w[0].numel())
    x = patches @ w.reshape(w.shape[0], -1).T + sd["patch_embed.proj.bias"]
    mid = x.shape[1] // 2
    cls = sd["cls_token"].expand(x.shape[0], -1, -1)
    hidden = torch.cat([x[:, :mid], cls, x[:, mid:]], dim=1) + sd["pos_embed"]
    residual, streams = None, []
    for i in range(depth):
        residual = hidden if residual is None else residual + hidden
        hidden = _naive_mixer(sd, f"layers.{i}.mixer.",
                              _rms(residual, sd[f"layers.{i}.norm.weight"]))
        streams.append(_rms(residual + hidden, sd["norm_f.weight"]))
    return streams, mid


def _tiny_from_official(state):
    model = VisionMamba(**TINY).eval()
    model.load_state_dict(VisionMamba.convert(state), strict=True)
    return model


def test_convert_maps_the_official_layout_onto_the_module():
    state = _official_state()
    converted = VisionMamba.convert(state)
    model = VisionMamba(**TINY)
    assert set(converted) == set(model.state_dict())  # every official key lands, none left
    assert len(converted) == len(state)
    assert converted["layers.1.mixer.ssm_b.A_log"] is state["layers.1.mixer.A_b_log"]
    assert converted["layers.1.mixer.ssm_b.conv1d.bias"] is state["layers.1.mixer.conv1d_b.bias"]
    assert converted["layers.2.mixer.ssm.D"] is state["layers.2.mixer.D"]
    # vitbench's own layout passes through unchanged
    own = model.state_dict()
    assert VisionMamba.convert(own).keys() == own.keys()
    _tiny_from_official(state)  # strict load


def test_forward_equals_naive_official_forward():
    state = _official_state(seed=1)
    model = _tiny_from_official(state)
    x = torch.randn(2, 3, 24, 24)
    streams, mid = _naive_vim(state, x, patch=8, depth=3)
    with torch.no_grad():
        feats = model.forward_image(x, layers=(0, -2, -1))
        logits = model(x)

    def close(got, want):
        torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-4)

    final = streams[-1]
    assert mid == 4 and feats.tokens.shape == (2, 9, 16)
    close(feats.pooled, final[:, mid])
    close(feats.tokens, torch.cat([final[:, :mid], final[:, mid + 1:]], dim=1))
    close(logits, final[:, mid] @ state["head.weight"].double().T + state["head.bias"])
    assert [layer.index for layer in feats.layers] == [0, -2, -1]
    for layer, block in zip(feats.layers, (0, 1, 2), strict=True):
        close(layer.cls, streams[block][:, mid])
        close(layer.tokens, torch.cat([streams[block][:, :mid], streams[block][:, mid + 1:]], 1))


def test_bf16_autocast_stays_close_to_fp32():
    model = _tiny_from_official(_official_state(seed=2))
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        fp32 = model.forward_image(x).pooled
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model.forward_image(x).pooled
    assert F.cosine_similarity(bf16.float(), fp32).min() > 0.99


# -- entries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vim_t", "vim_s"])
def test_meta_params_and_flops_match_the_spec(name):
    spec = get_entry(name).spec
    kwargs = get_entry(name).build_args["kwargs"]
    with torch.device("meta"):
        model = VisionMamba(**kwargs)
        pixels = torch.empty(1, 3, spec.input_size, spec.input_size)
        with FlopCounterMode(display=False) as counter:
            feats = model.forward_image(pixels, layers=(-1,))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == spec.params_m
    # the paper/README publish whole millions (7M, 26M): the count rounds to them
    assert round(params) == spec.published_params_m
    assert abs(params / spec.published_params_m - 1) < 0.025
    assert round(counter.get_total_flops() / 2 / 1e9, 2) == spec.gflops
    assert feats.pooled.shape == (1, spec.embed_dim)
    assert feats.tokens.shape == (1, (spec.input_size // spec.patch_size) ** 2, spec.embed_dim)
    assert feats.layers[0].cls.shape == (1, spec.embed_dim)


def test_entries_build_random_and_load_both_layouts(tmp_path):
    random = vitbench.load("vim_t", pretrained=False)
    assert random.loaded.kind == "random" and random.spec.embed_dim == 192
    g = torch.Generator().manual_seed(1)  # weights that differ from the seeded random ones
    other = {key: value + 0.01 * torch.randn(value.shape, generator=g)
             for key, value in random.model.state_dict().items()}
    save_file(other, tmp_path / "model.safetensors")
    ours = vitbench.load("vim_t", pretrained=tmp_path / "model.safetensors")
    official = {_to_official(key): value for key, value in other.items()}
    assert "layers.0.mixer.A_b_log" in official and "layers.0.mixer.conv1d_b.bias" in official
    torch.save({"model": official, "epoch": 299}, tmp_path / "checkpoint.pth")
    theirs = vitbench.load("vim_t", pretrained=tmp_path / "checkpoint.pth")
    for encoder in (ours, theirs):
        assert encoder.loaded.kind == "file"
        for key, value in encoder.model.state_dict().items():
            torch.testing.assert_close(value, other[key], rtol=0, atol=0)


def _to_official(key: str) -> str:
    """vitbench layout -> official names, written independently of convert (the test's side)."""
    for module in ("conv1d", "x_proj", "dt_proj"):
        key = key.replace(f"mixer.ssm_b.{module}.", f"mixer.{module}_b.")
        key = key.replace(f"mixer.ssm.{module}.", f"mixer.{module}.")
    return (key.replace("mixer.ssm_b.A_log", "mixer.A_b_log").replace("mixer.ssm_b.D", "mixer.D_b")
            .replace("mixer.ssm.A_log", "mixer.A_log").replace("mixer.ssm.D", "mixer.D"))


def _tiny_entry():
    """vim_t's spec and adapter path with a tiny architecture (24 px, 9 patches)."""
    entry = get_entry("vim_t")
    spec = replace(entry.spec, name="vim_tiny_test", input_size=24, embed_dim=16, patch_size=8)
    return Entry(spec, {"factory": "vim:VisionMamba", "kwargs": TINY})


def test_adapter_loads_official_and_own_layouts_with_equal_outputs(tmp_path):
    entry, state = _tiny_entry(), _official_state(seed=3)
    torch.save({"model": state, "model_ema": state, "optimizer": {"state": {}}, "epoch": 3},
               tmp_path / "official.pth")
    from_official = build(entry, parse_pretrained(tmp_path / "official.pth", entry.spec), None)
    save_file(from_official.model.state_dict(), tmp_path / "model.safetensors")
    from_own = build(entry, parse_pretrained(tmp_path / "model.safetensors", entry.spec), None)
    x = torch.randn(2, 3, 24, 24)
    streams, mid = _naive_vim(state, x, patch=8, depth=3)
    for encoder in (from_official, from_own):
        feats = encoder.encode_image(x)
        torch.testing.assert_close(feats.pooled, streams[-1][:, mid].float(), rtol=1e-4,
                                   atol=1e-4)


def test_bad_inputs_are_one_line_errors(tmp_path):
    entry = _tiny_entry()
    save_file(VisionMamba(**{**TINY, "embed_dim": 32}).state_dict(), tmp_path / "m.safetensors")
    with pytest.raises(VitbenchError, match="do not fit vim_tiny_test") as info:
        build(entry, parse_pretrained(tmp_path / "m.safetensors", entry.spec), None)
    assert "\n" not in str(info.value)
    encoder = build(entry, parse_pretrained(False, entry.spec), None)
    with pytest.raises(VitbenchError, match=r"pixels of shape \(B, 3, 24, 24\)"):
        encoder.encode_image(torch.randn(1, 3, 32, 32))
    with pytest.raises(VitbenchError, match="block indices"):
        encoder.encode_image(torch.randn(1, 3, 24, 24), layers=[3])
    with pytest.raises(VitbenchError, match="cannot run at 32 px"):
        build(entry, parse_pretrained(False, entry.spec), 32)
    with pytest.raises(VitbenchError, match="hustvl/Vim-small-midclstok.*unavailable"):
        vitbench.load("vim_s")


@pytest.mark.slow
def test_full_size_vim_t_from_official_layout_equals_naive_forward(tmp_path):
    state = _official_state(seed=4, img_size=224, patch_size=16, embed_dim=192, depth=24,
                            d_state=16, num_classes=1000)
    torch.save({"model": state}, tmp_path / "vim_t_midclstok_76p1acc.pth")
    encoder = vitbench.load("vim_t", pretrained=tmp_path)
    x = torch.randn(1, 3, 224, 224)
    streams, mid = _naive_vim(state, x, patch=16, depth=24)
    feats = encoder.encode_image(x)
    torch.testing.assert_close(feats.pooled, streams[-1][:, mid].float(), rtol=1e-3, atol=1e-3)
