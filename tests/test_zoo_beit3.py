"""BEiT-3 reference (zoo/reference/beit3.py) against computations written out here.

The checkpoints cannot be downloaded, so the tests write a random state dict in the official
torchscale key layout (`official_state`) and compute what torchscale computes from it directly
(`reference_forward`: token-by-token expert choice, attention as explicit einsums); the image
path is also checked against timm's VisionTransformer, an independent ViT that has both sub-LN
norms (scale_attn_norm / scale_mlp_norm). Full-size entries are built on the meta device only.
"""

import dataclasses
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

import vitbench
from vitbench.errors import VitbenchError
from vitbench.zoo.reference.beit3 import BEiT3
from vitbench.zoo.registry import Entry, build, get_entry
from vitbench.zoo.weights import WeightsRequest

DIM, DEPTH, HEADS, HIDDEN, PATCH, SIZE, VOCAB, TEXT_ROWS = 32, 2, 4, 128, 8, 32, 40, 34
TINY = dict(img_size=SIZE, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
            vocab_size=VOCAB, max_text_positions=TEXT_ROWS - 2)
EXPERTS = "AB"  # torchscale: A = vision, B = language


# -- the official layout and what torchscale computes from it ---------------------------------

def official_state(seed=0, grid=SIZE // PATCH):
    """A BEiT3ForRetrieval state dict with torchscale's key names (random values)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    def norm(prefix, width):
        return {f"{prefix}.weight": 1 + r(width, scale=0.1), f"{prefix}.bias": r(width, scale=0.1)}

    def linear(prefix, out, inp):
        return {f"{prefix}.weight": r(out, inp, scale=inp ** -0.5), f"{prefix}.bias": r(out)}

    s = {"beit3.vision_embed.proj.weight": r(DIM, 3, PATCH, PATCH, scale=0.1),
         "beit3.vision_embed.proj.bias": r(DIM),
         "beit3.vision_embed.cls_token": r(1, 1, DIM),
         "beit3.vision_embed.mask_token": r(1, 1, DIM),
         "beit3.text_embed.weight": r(VOCAB, DIM),
         "beit3.encoder.embed_positions.A.weight": r(grid * grid + 1 + 2, DIM),
         "beit3.encoder.embed_positions.B.weight": r(TEXT_ROWS, DIM),
         "vision_head.weight": r(DIM, DIM, scale=DIM ** -0.5),
         "language_head.weight": r(DIM, DIM, scale=DIM ** -0.5),
         "logit_scale": torch.tensor(math.log(1 / 0.07))}
    for i in range(DEPTH):
        p = f"beit3.encoder.layers.{i}."
        for e in EXPERTS:
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                s.update(linear(f"{p}self_attn.{proj}.{e}", DIM, DIM))
            s.update(norm(f"{p}self_attn.inner_attn_ln.{e}", DIM))
            s.update(norm(f"{p}self_attn_layer_norm.{e}", DIM))
            s.update(norm(f"{p}final_layer_norm.{e}", DIM))
            s.update(linear(f"{p}ffn.{e}.fc1", HIDDEN, DIM))
            s.update(norm(f"{p}ffn.{e}.ffn_layernorm", HIDDEN))
            s.update(linear(f"{p}ffn.{e}.fc2", DIM, HIDDEN))
    for e in EXPERTS:
        s.update(norm(f"beit3.encoder.layer_norm.{e}", DIM))
    return s


def _ln(x, s, key):
    return F.layer_norm(x, x.shape[-1:], s[f"{key}.weight"], s[f"{key}.bias"], eps=1e-5)


def _lin(x, s, key):
    return x @ s[f"{key}.weight"].T + s.get(f"{key}.bias", 0)


def _per_token(x, n_image, fn):
    """fn(token, expert) for each position: expert A for the first n_image tokens, B after."""
    return torch.stack([fn(x[:, t], "A" if t < n_image else "B") for t in range(x.shape[1])], 1)


def reference_layer(s, i, x, n_image, padding=None):
    """One torchscale EncoderLayer (pre-LN, sub-LN, multiway) written out."""
    p = f"beit3.encoder.layers.{i}."
    b, n, d = x.shape
    h = _per_token(x, n_image, lambda v, e: _ln(v, s, f"{p}self_attn_layer_norm.{e}"))
    q, k, v = (_per_token(h, n_image, lambda t, e, w=w: _lin(t, s, f"{p}self_attn.{w}.{e}"))
               .view(b, n, HEADS, d // HEADS) for w in ("q_proj", "k_proj", "v_proj"))
    scores = torch.einsum("bqhd,bkhd->bhqk", q * (d // HEADS) ** -0.5, k)
    if padding is not None:
        scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
    attn = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(b, n, d)
    x = x + _per_token(attn, n_image, lambda t, e: _lin(
        _ln(t, s, f"{p}self_attn.inner_attn_ln.{e}"), s, f"{p}self_attn.out_proj.{e}"))
    return x + _per_token(x, n_image, lambda t, e: _lin(_ln(F.gelu(_lin(
        _ln(t, s, f"{p}final_layer_norm.{e}"), s, f"{p}ffn.{e}.fc1")),
        s, f"{p}ffn.{e}.ffn_layernorm"), s, f"{p}ffn.{e}.fc2"))


def reference_forward(s, pixels=None, ids=None, padding=None, keep=()):
    """torchscale BEiT3.forward: image tokens (positions from row 2 of table A), then text
    tokens (positions from row 2 of table B, padded ones zeroed), the layers, the final norm.
    Returns the output and the blocks listed in `keep` after the final norm."""
    parts, pads = [], []
    if pixels is not None:
        x = F.conv2d(pixels, s["beit3.vision_embed.proj.weight"],
                     s["beit3.vision_embed.proj.bias"], stride=PATCH).flatten(2).transpose(1, 2)
        x = torch.cat([s["beit3.vision_embed.cls_token"].expand(len(x), 1, DIM), x], 1)
        parts.append(x + s["beit3.encoder.embed_positions.A.weight"][2:2 + x.shape[1]])
        pads.append(torch.zeros(x.shape[:2], dtype=torch.bool))
    n_image = parts[0].shape[1] if parts else 0
    if ids is not None:
        padding = torch.zeros(ids.shape, dtype=torch.bool) if padding is None else padding
        t = s["beit3.text_embed.weight"][ids]
        t = t + s["beit3.encoder.embed_positions.B.weight"][2:2 + ids.shape[1]]
        parts.append(t * (~padding).unsqueeze(-1))
        pads.append(padding)
    x, pad = torch.cat(parts, 1), torch.cat(pads, 1)
    kept = {}

    def final_norm(x):
        return _per_token(x, n_image, lambda v, e: _ln(v, s, f"beit3.encoder.layer_norm.{e}"))

    for i in range(DEPTH):
        x = reference_layer(s, i, x, n_image, pad)
        if i in keep:
            kept[i] = final_norm(x)
    return final_norm(x), kept


def _model(state=None):
    torch.manual_seed(0)
    model = BEiT3(**TINY).eval()
    if state is not None:
        model.load_state_dict(BEiT3.convert(state), strict=True)
    return model


# -- the Multiway layer, the paths, the fusion ------------------------------------------------

def test_multiway_layer_routes_image_tokens_to_a_and_text_tokens_to_b():
    s = official_state()
    model = _model(s)
    x = torch.randn(2, 9, DIM)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[1, -2:] = True  # the second text is two tokens shorter
    with torch.no_grad():
        got = model.blocks[1](x, 5, padding)
    want = reference_layer(s, 1, x, 5, padding)
    torch.testing.assert_close(got[~padding], want[~padding], rtol=1e-5, atol=1e-5)
    # the experts really differ: routing every token to A gives another answer
    assert not torch.allclose(model.blocks[1](x, 9, padding), got, atol=1e-3)


def test_image_path_equals_timm_vit_on_the_vision_experts():
    """An independent BEiT-style ViT (timm, with sub-LN in attention and MLP) on the A weights."""
    from timm.models.vision_transformer import VisionTransformer

    s = official_state(1)
    vit = VisionTransformer(img_size=SIZE, patch_size=PATCH, embed_dim=DIM, depth=DEPTH,
                            num_heads=HEADS, mlp_ratio=HIDDEN / DIM, qkv_bias=True,
                            scale_attn_norm=True, scale_mlp_norm=True, num_classes=0,
                            norm_layer=partial(torch.nn.LayerNorm, eps=1e-5)).eval()
    t = {"cls_token": s["beit3.vision_embed.cls_token"],
         "pos_embed": s["beit3.encoder.embed_positions.A.weight"][2:][None],
         "patch_embed.proj.weight": s["beit3.vision_embed.proj.weight"],
         "patch_embed.proj.bias": s["beit3.vision_embed.proj.bias"],
         "norm.weight": s["beit3.encoder.layer_norm.A.weight"],
         "norm.bias": s["beit3.encoder.layer_norm.A.bias"]}
    for i in range(DEPTH):
        p = f"beit3.encoder.layers.{i}."
        for param in ("weight", "bias"):
            t[f"blocks.{i}.attn.qkv.{param}"] = torch.cat(
                [s[f"{p}self_attn.{w}_proj.A.{param}"] for w in "qkv"])
            for timm_name, name in (("norm1", "self_attn_layer_norm.A"),
                                    ("attn.norm", "self_attn.inner_attn_ln.A"),
                                    ("attn.proj", "self_attn.out_proj.A"),
                                    ("norm2", "final_layer_norm.A"), ("mlp.fc1", "ffn.A.fc1"),
                                    ("mlp.norm", "ffn.A.ffn_layernorm"), ("mlp.fc2", "ffn.A.fc2")):
                t[f"blocks.{i}.{timm_name}.{param}"] = s[f"{p}{name}.{param}"]
    vit.load_state_dict(t, strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        want = vit.forward_features(x)
        got = _model(s).forward_image(x)
    torch.testing.assert_close(got.pooled, want[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.tokens, want[:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.projected, want[:, 0] @ s["vision_head.weight"].T,
                               rtol=1e-5, atol=1e-5)


def test_image_path_never_reads_the_language_experts():
    s = official_state(2)
    model = _model(s)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        before = model.forward_image(x)
        for name, p in model.named_parameters():
            if ".text." in name or name.startswith("text"):
                p.fill_(float("nan"))
        after = model.forward_image(x)
    torch.testing.assert_close(after.pooled, before.pooled)
    torch.testing.assert_close(after.tokens, before.tokens)


def test_per_layer_outputs_are_blocks_after_the_final_vision_norm():
    s = official_state(3)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        got = _model(s).forward_image(x, layers=(0, -1))
    final, kept = reference_forward(s, pixels=x, keep=(0,))
    torch.testing.assert_close(got.layers[0].cls, kept[0][:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.layers[0].tokens, kept[0][:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.layers[1].tokens, final[:, 1:], rtol=1e-5, atol=1e-5)
    with pytest.raises(VitbenchError, match="layers must be block indices"):
        _model(s).forward_image(x, layers=(DEPTH,))


def test_text_path_and_padding():
    s = official_state(4)
    model = _model(s)
    ids = torch.tensor([[0, 5, 9, 7, 2, 1, 1], [0, 6, 3, 8, 11, 12, 2]])
    padding = torch.tensor([[False] * 5 + [True] * 2, [False] * 7])
    with torch.no_grad():
        got = model.encode_ids(ids, padding)
        short = model.encode_ids(ids[:1, :5])  # the same text without padding
    want, _ = reference_forward(s, ids=ids, padding=padding)
    torch.testing.assert_close(got[~padding], want[~padding], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(short[0, 0], got[0, 0], rtol=1e-5, atol=1e-5)


def test_fusion_path_mixes_both_expert_sets():
    s = official_state(5)
    x = torch.randn(2, 3, SIZE, SIZE)
    ids = torch.tensor([[0, 5, 9, 2, 1], [0, 6, 3, 8, 2]])
    padding = ids == 1
    with torch.no_grad():
        got = _model(s).forward_fusion(x, ids, padding)
    want, _ = reference_forward(s, pixels=x, ids=ids, padding=padding)
    keep = torch.cat([torch.ones(2, 17, dtype=torch.bool), ~padding], 1)
    torch.testing.assert_close(got[keep], want[keep], rtol=1e-5, atol=1e-5)


# -- tokenizer --------------------------------------------------------------------------------

def _xlmr_tokenizer(directory=None):
    """A tiny XLM-R-style (sentencepiece unigram) tokenizer: <s>=0, <pad>=1, </s>=2."""
    from transformers import XLMRobertaTokenizer

    pieces = ["▁a", "▁cat", "▁dog", "▁red", "▁square", "▁photo", "▁of", "s", "▁the"]
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab + [(p, -float(i)) for i, p in enumerate(pieces)]
                                    + [("<mask>", 0.0)])
    if directory is not None:
        tokenizer.save_pretrained(directory)
    return tokenizer


def test_forward_text_is_language_head_of_the_class_token(tmp_path):
    s = official_state(6)
    model = _model(s)
    texts = ["a photo of a cat", "the red squares"]
    with pytest.raises(VitbenchError, match="beit3.spm") as info:
        model.forward_text(texts)
    assert "\n" not in str(info.value)
    _xlmr_tokenizer(tmp_path)
    model.use_weights_dir(tmp_path / "model.safetensors")  # a file: its directory is read
    tokenizer = _xlmr_tokenizer()
    ids = [tokenizer(t)["input_ids"] for t in texts]
    assert ids[0][0] == 0 and ids[0][-1] == 2  # bos ... eos, as the official data pipeline
    with torch.no_grad():
        got = model.forward_text(texts)
    for row, one in enumerate(ids):
        out, _ = reference_forward(s, ids=torch.tensor([one]))
        torch.testing.assert_close(got[row], out[0, 0] @ s["language_head.weight"].T,
                                   rtol=1e-5, atol=1e-5)


def test_unreadable_spm_and_unfitting_tokenizers_are_one_line_errors(tmp_path):
    (tmp_path / "beit3.spm").write_bytes(b"not a sentencepiece model")
    model = _model()
    model.use_weights_dir(tmp_path)  # the image side still loads ...
    with pytest.raises(VitbenchError, match="beit3.spm") as info:  # ... text says why not
        model.forward_text(["a cat"])
    assert "\n" not in str(info.value)
    with pytest.raises(VitbenchError, match="beit3.spm"):
        model.set_tokenizer(tmp_path)
    small = BEiT3(**{**TINY, "vocab_size": 8})
    small.set_tokenizer(_xlmr_tokenizer())
    with pytest.raises(VitbenchError, match="beyond BEiT-3's 8-token vocabulary"):
        small.forward_text(["the red squares"])


# -- weights: convert, both layouts through the loader, other resolutions ---------------------

def _inverse(mine):
    """This module's layout -> torchscale's, written independently of `convert`."""
    expert = {"image": "A", "text": "B"}
    out = {}
    for key, value in mine.items():
        parts = key.split(".")
        if key == "image_pos":
            out["beit3.encoder.embed_positions.A.weight"] = value
        elif key == "text_pos":
            out["beit3.encoder.embed_positions.B.weight"] = value
        elif key == "cls_token":
            out["beit3.vision_embed.cls_token"] = value
        elif parts[0] == "patch_embed":
            out[f"beit3.vision_embed.proj.{parts[1]}"] = value
        elif parts[0] == "text_embed":
            out[f"beit3.{key}"] = value
        elif parts[0] in ("image_proj", "text_proj"):
            out[{"image_proj": "vision_head", "text_proj": "language_head"}[parts[0]]
                + ".weight"] = value
        elif parts[0] == "norm":
            out[f"beit3.encoder.layer_norm.{expert[parts[1]]}.{parts[2]}"] = value
        else:  # blocks.i.<module>...
            i, rest = parts[1], parts[2:]
            if rest[0] == "mlp":  # mlp.<expert>.<fc1|norm|fc2>.<param>
                name = {"fc1": "fc1", "norm": "ffn_layernorm", "fc2": "fc2"}[rest[2]]
                new = f"ffn.{expert[rest[1]]}.{name}.{rest[3]}"
            else:  # norm1 / norm2 / attn.<q|k|v|proj|norm>, then <expert>.<param>
                name = {"norm1": "self_attn_layer_norm", "norm2": "final_layer_norm",
                        "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
                        "attn.v": "self_attn.v_proj", "attn.proj": "self_attn.out_proj",
                        "attn.norm": "self_attn.inner_attn_ln"}[".".join(rest[:-2])]
                new = f"{name}.{expert[rest[-2]]}.{rest[-1]}"
            out[f"beit3.encoder.layers.{i}.{new}"] = value
    return out


def test_convert_round_trips_the_official_layout():
    s = official_state(7)
    model = _model(s)  # strict load: no key missing or left over
    back = _inverse(model.state_dict())
    dropped = {"beit3.vision_embed.mask_token", "logit_scale"}
    assert set(back) == set(s) - dropped
    for key, value in back.items():
        if "embed_positions" in key:  # rows 0 and 1 (fairseq's offset) are never read
            torch.testing.assert_close(value, s[key][2:])
        else:
            torch.testing.assert_close(value, s[key], msg=key)
    assert set(BEiT3.convert(model.state_dict())) == set(model.state_dict())


def _tiny_entry():
    spec = dataclasses.replace(get_entry("beit3_b16").spec, name="beit3_tiny", input_size=SIZE,
                               patch_size=PATCH, embed_dim=DIM, projection_dim=DIM)
    return Entry(spec, {"factory": "beit3:BEiT3", "kwargs": TINY})


def _load(path, resolution=SIZE):
    return build(_tiny_entry(), WeightsRequest("file", path.name, path), resolution)


def test_loader_reads_official_pth_and_own_safetensors(tmp_path):
    s = official_state(8)
    torch.save({"model": s}, tmp_path / "beit3_base_itc_patch16_224.pth")
    official = _load(tmp_path / "beit3_base_itc_patch16_224.pth")
    save_file(official.model.state_dict(), tmp_path / "model.safetensors")
    own = _load(tmp_path / "model.safetensors")
    x = torch.randn(2, 3, SIZE, SIZE)
    want, _ = reference_forward(s, pixels=x)
    for encoder in (official, own):
        got = encoder.encode_image(x)
        torch.testing.assert_close(got.pooled, want[:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.projected, want[:, 0] @ s["vision_head.weight"].T,
                                   rtol=1e-5, atol=1e-5)


def test_wrong_weights_are_a_one_line_error(tmp_path):
    s = official_state(9)
    del s["vision_head.weight"]
    s["beit3.mlm_head.weight"] = torch.zeros(VOCAB, DIM)
    torch.save({"model": s}, tmp_path / "other.pth")
    with pytest.raises(VitbenchError, match="do not fit beit3_tiny") as info:
        _load(tmp_path / "other.pth")
    assert "\n" not in str(info.value)


def test_other_resolution_resamples_the_image_positions_as_the_official_loader(tmp_path):
    s = official_state(10)
    torch.save({"model": s}, tmp_path / "ckpt.pth")
    encoder = _load(tmp_path / "ckpt.pth", resolution=48)
    # utils.load_model_and_may_interpolate: keep the 3 leading rows, bicubic on the 4x4 grid
    table = s["beit3.encoder.embed_positions.A.weight"]
    grid = table[3:].reshape(1, 4, 4, DIM).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False)
    s48 = {**s, "beit3.encoder.embed_positions.A.weight":
           torch.cat([table[:3], grid.permute(0, 2, 3, 1).reshape(36, DIM)])}
    x = torch.randn(1, 3, 48, 48)
    want, _ = reference_forward(s48, pixels=x)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.tokens, want[:, 1:], rtol=1e-5, atol=1e-5)
    assert encoder.transform.transforms[1].size == (48, 48)  # squash to the new size


# -- the registered entries -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["beit3_b16", "beit3_l16"])
def test_registered_entries_on_meta(name):
    """Shapes, the image-tower count, the whole-model count and GFLOPs, without memory."""
    entry = get_entry(name)
    spec = entry.spec
    with torch.device("meta"):
        model = BEiT3(**entry.build_args["kwargs"])
    tower = sum(p.numel() for p in model.image_tower()) / 1e6
    total = sum(p.numel() for p in model.parameters()) / 1e6
    assert tower == pytest.approx(spec.params_m, abs=0.01)
    published_total = {"beit3_b16": 222, "beit3_l16": 674}[name]  # unilm README, *-itc
    assert total == pytest.approx(published_total, rel=2e-3)
    head = spec.embed_dim * 1000 + 1000 + 2 * spec.embed_dim  # README's classifier adds these
    assert round(tower + head / 1e6) == spec.published_params_m
    with FlopCounterMode(display=False) as flops:
        out = model.forward_image(torch.empty(1, 3, 224, 224, device="meta"))
    assert flops.get_total_flops() / 2 / 1e9 == pytest.approx(spec.gflops, abs=0.01)
    assert out.pooled.shape == (1, spec.embed_dim) and out.tokens.shape == (1, 196, spec.embed_dim)
    assert out.projected.shape == (1, spec.projection_dim)


def test_published_weights_offline_are_a_one_line_error():
    with pytest.raises(VitbenchError, match="beit3_base_itc_patch16_224.pth|not on the") as info:
        vitbench.load("beit3_b16")
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["beit3_b16", "beit3_l16"])
def test_full_size_random_build(name):
    encoder = vitbench.load(name, pretrained=False)
    out = encoder.encode_image(torch.randn(1, 3, 224, 224))
    assert out.pooled.shape == (1, encoder.spec.embed_dim) and torch.isfinite(out.pooled).all()
