"""ALBEF and VLMo (zoo/reference/albef.py, vlmo.py): every path, loaded from a checkpoint in the
official key layout, equals an independent computation on the same weights.

ALBEF's checkpoint is assembled from timm's VisionTransformer (image encoder) and transformers'
BertModel (text layers; cross-attention layers for the fusion part), and those libraries are
the references. VLMo's is written out key by key as the official code names them; timm's BEiT
(whose attention and relative position index VLMo shares) is the reference for the image
path, and timm BEiT blocks fed with indices built by loops from the official formulas are the
reference for the text and fusion paths. Tiny sizes; full sizes only on the meta device.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import vitbench
from vitbench.errors import VitbenchError
from vitbench.zoo.adapters.reference import load_into
from vitbench.zoo.reference.albef import ALBEF, clean_caption
from vitbench.zoo.reference.vlmo import VLMo
from vitbench.zoo.registry import Entry, build, get_entry
from vitbench.zoo.weights import WeightsRequest

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the", "cat",
         "dog", "red", "square", "##s", "on", "blue", "circle", "two"]
TEXTS = ["a photo of the cats", "red square on blue", "two dogs"]  # already ALBEF-clean


def tiny_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})


def perturb(module: nn.Module, seed: int, scale: float = 0.1) -> None:
    """Move every parameter off its init (LayerNorms off 1/0, biases off 0), reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def encode_ids(texts, max_length, padding):
    batch = tiny_tokenizer()(texts, padding=padding, truncation=True, max_length=max_length,
                             return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def reference_entry(name: str, kwargs: dict, size: int) -> Entry:
    """The registered entry's spec at a tiny size: built by the real adapter, not registered."""
    spec = replace(get_entry(name).spec, name=f"{name}_tiny", input_size=size)
    return Entry(spec, {"factory": get_entry(name).build_args["factory"], "kwargs": kwargs})


def load_file(entry: Entry, path, resolution: int | None = None):
    return build(entry, WeightsRequest("file", path.name, path), resolution)


# =============================================================================================
# ALBEF

ALBEF_TINY = dict(img_size=32, patch_size=8, vision_dim=32, vision_depth=2, vision_heads=2,
                  vocab_size=len(WORDS), text_dim=32, text_layers=4, text_heads=2,
                  text_mlp_dim=64, fusion_layer=2, max_positions=64, embed_dim=16,
                  max_text_len=12)


class AlbefReference:
    """timm ViT + transformers BERT (text-only and cross-attention) + the three heads, and the
    official checkpoint they make."""

    def __init__(self, seed: int = 0):
        import timm
        from transformers import BertConfig, BertModel

        torch.manual_seed(seed)
        self.vit = timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, qkv_bias=True,
            num_classes=0, global_pool="token").eval()
        bert = dict(vocab_size=len(WORDS), hidden_size=32, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64, hidden_act="gelu",
                    layer_norm_eps=1e-12)
        self.text = BertModel(BertConfig(num_hidden_layers=2, **bert),
                              add_pooling_layer=False).eval()
        self.fusion = BertModel(BertConfig(num_hidden_layers=2, is_decoder=True,
                                           add_cross_attention=True, **bert),
                                add_pooling_layer=False).eval()
        for layer in self.fusion.encoder.layer:  # ALBEF's fusion self-attention is bidirectional
            layer.attention.self.is_causal = False
        self.heads = {"vision_proj": nn.Linear(32, 16), "text_proj": nn.Linear(32, 16),
                      "itm_head": nn.Linear(32, 2)}
        for i, module in enumerate([self.vit, self.text, self.fusion, *self.heads.values()]):
            perturb(module, seed + i)

    def official_state(self) -> dict[str, torch.Tensor]:
        state = {f"visual_encoder.{k}": v for k, v in self.vit.state_dict().items()}
        state |= {f"text_encoder.bert.{k}": v for k, v in self.text.state_dict().items()}
        for key, value in self.fusion.state_dict().items():
            layer = re.match(r"encoder\.layer\.(\d+)\.(.+)", key)
            if layer:  # the fusion model's own embeddings are not part of ALBEF
                state[f"text_encoder.bert.encoder.layer.{int(layer[1]) + 2}.{layer[2]}"] = value
        for name, head in self.heads.items():
            state |= {f"{name}.{k}": v for k, v in head.state_dict().items()}
        # what else the official checkpoints carry: momentum copies, queues, MLM head, buffers
        state |= {k.replace("visual_encoder.", "visual_encoder_m.", 1): v + 1
                  for k, v in list(state.items()) if k.startswith("visual_encoder.")}
        state |= {k.replace("text_encoder.", "text_encoder_m.", 1): v + 1
                  for k, v in list(state.items()) if k.startswith("text_encoder.")}
        state |= {"vision_proj_m.weight": torch.zeros(16, 32), "text_proj_m.bias": torch.zeros(16),
                  "image_queue": torch.randn(16, 64), "text_queue": torch.randn(16, 64),
                  "queue_ptr": torch.zeros(1, dtype=torch.long), "temp": torch.tensor(0.07),
                  "text_encoder.cls.predictions.bias": torch.zeros(len(WORDS)),
                  "text_encoder.bert.embeddings.position_ids": torch.arange(64)[None]}
        return state

    @torch.no_grad()
    def image(self, x):
        return self.vit.forward_features(x)

    @torch.no_grad()
    def text_hidden(self, ids, mask):
        return self.text(input_ids=ids, attention_mask=mask).last_hidden_state

    @torch.no_grad()
    def itm_logits(self, x, ids, mask):
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        fused = self.fusion.encoder(self.text_hidden(ids, mask), attention_mask=additive,
                                    encoder_hidden_states=self.image(x)).last_hidden_state
        return self.heads["itm_head"](fused[:, 0])


@pytest.fixture(scope="module")
def albef():
    ref = AlbefReference()
    model = ALBEF(**ALBEF_TINY, tokenizer=tiny_tokenizer()).eval()
    model.load_state_dict(ALBEF.convert(ref.official_state()), strict=True)
    return model, ref


@torch.no_grad()
def test_albef_image_path_equals_timm_vit(albef):
    model, ref = albef
    x = images(2)
    feats = model.forward_image(x, layers=(0, -1))
    want = ref.image(x)
    torch.testing.assert_close(feats.pooled, want[:, 0])
    torch.testing.assert_close(feats.tokens, want[:, 1:])
    proj = ref.heads["vision_proj"]
    torch.testing.assert_close(feats.projected, want[:, 0] @ proj.weight.T + proj.bias)
    first = ref.vit.norm(ref.vit.blocks[0](ref.vit._pos_embed(ref.vit.patch_embed(x))))
    torch.testing.assert_close(feats.layers[0].cls, first[:, 0])
    torch.testing.assert_close(feats.layers[0].tokens, first[:, 1:])
    torch.testing.assert_close(feats.layers[1].tokens, want[:, 1:])


@torch.no_grad()
def test_albef_text_path_equals_bert(albef):
    model, ref = albef
    ids, mask = encode_ids(TEXTS, 12, "longest")
    assert not mask.all()  # padding present: the mask must matter
    proj = ref.heads["text_proj"]
    want = ref.text_hidden(ids, mask)[:, 0] @ proj.weight.T + proj.bias
    torch.testing.assert_close(model.text_embed(ids, mask.bool()), want)
    torch.testing.assert_close(model.forward_text(TEXTS), want)
    # raw captions are cleaned as ALBEF's datasets clean them before tokenizing
    torch.testing.assert_close(model.forward_text(["A photo of the CATS!", "Red-square on blue.",
                                                   "two   dogs"]), want)


@torch.no_grad()
def test_albef_itm_equals_bert_cross_attention(albef):
    model, ref = albef
    x = images(3, seed=1)
    ids, mask = encode_ids(TEXTS, 12, "longest")
    want = ref.itm_logits(x, ids, mask)
    torch.testing.assert_close(model.itm_logits(x, ids, mask), want)  # an integer mask too
    torch.testing.assert_close(model.itm_scores(x, TEXTS), want.softmax(-1)[:, 1])


def test_albef_convert_keeps_exactly_the_encoding_weights(albef):
    model, ref = albef
    converted = ALBEF.convert(ref.official_state())
    assert set(converted) == set(model.state_dict())
    finetuned = {k.replace("text_encoder.bert.", "text_encoder.", 1): v  # retrieval: BertModel
                 for k, v in ref.official_state().items()}
    assert ALBEF.convert(finetuned).keys() == converted.keys()
    assert ALBEF.convert(model.state_dict()).keys() == model.state_dict().keys()  # ours: as is
    with pytest.raises(VitbenchError, match="unexpected key"):
        ALBEF.convert({**ref.official_state(), "text_encoder.bert.surprise": torch.zeros(1)})


@torch.no_grad()
def test_albef_loads_both_layouts_through_the_adapter(albef, tmp_path):
    model, ref = albef
    entry = reference_entry("albef_b16", ALBEF_TINY, 32)
    official = tmp_path / "ALBEF.pth"  # as released: the state under "model", beside the rest
    torch.save({"model": ref.official_state(), "config": {"image_res": 32}, "epoch": 29},
               official)
    ours = tmp_path / "ours"
    ours.mkdir()
    save_file(model.state_dict(), ours / "model.safetensors")
    x = images(2, seed=2)
    want = model.forward_image(x)
    for path in (official, ours):
        got = load_file(entry, path).encode_image(x)
        torch.testing.assert_close(got.pooled, want.pooled)
        torch.testing.assert_close(got.projected, want.projected)


@torch.no_grad()
def test_albef_other_resolution_resamples_position_embeddings_like_timm(albef, tmp_path):
    import timm
    from timm.layers import resample_abs_pos_embed

    model, ref = albef
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    encoder = load_file(reference_entry("albef_b16", ALBEF_TINY, 32), tmp_path, resolution=48)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=48, patch_size=8, embed_dim=32, depth=2, num_heads=2, qkv_bias=True,
        num_classes=0, global_pool="token").eval()
    state = dict(ref.vit.state_dict())
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], [6, 6], num_prefix_tokens=1,
                                                interpolation="bicubic", antialias=False)
    vit.load_state_dict(state)
    x = images(2, size=48)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.tokens, vit.forward_features(x)[:, 1:])
    assert encoder.transform is not None and encoder.resolution == 48


def test_albef_clean_caption_follows_pre_caption():
    # dataset/utils.py pre_caption: lower case, drop ,.'!?"()*#:;~, '-' and '/' -> ' ',
    # squeeze spaces, keep max_words
    assert clean_caption("A Dog-walker, on the beach!  ") == "a dog walker on the beach"
    assert clean_caption("one two/three four", max_words=3) == "one two three"


# =============================================================================================
# VLMo

D, H, DEPTH, HIDDEN, T, T0, GRID, VL_START = 32, 2, 4, 64, 10, 12, 4, 2
VLMO_TINY = dict(img_size=32, patch_size=8, dim=D, depth=DEPTH, num_heads=H, mlp_ratio=2.0,
                 vl_ffn_start=VL_START, vocab_size=len(WORDS), max_text_len=T, text_positions=T0)
IMAGE_ROWS = (2 * GRID - 1) ** 2 + 3  # BEiT's image distances + 3 class-token rows
TABLE_ROWS = IMAGE_ROWS + 2 * T0 + 2


def vlmo_official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random VLMo checkpoint with the official key names and shapes (vlmo_module.py)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, base=0.0, scale=0.2):
        return base + scale * torch.randn(*shape, generator=g)

    v = len(WORDS)
    state = {
        "transformer.patch_embed.proj.weight": r(D, 3, 8, 8),
        "transformer.patch_embed.proj.bias": r(D), "transformer.cls_token": r(1, 1, D),
        "transformer.norm.weight": r(D, base=1), "transformer.norm.bias": r(D),
        "relative_position_bias_table": r(TABLE_ROWS, H * DEPTH, scale=1.0),
        "token_type_embeddings.weight": r(2, D),
        "text_embeddings.word_embeddings.weight": r(v, D),
        "text_embeddings.position_embeddings.weight": r(T, D),
        "text_embeddings.token_type_embeddings.weight": r(2, D),
        "text_embeddings.LayerNorm.weight": r(D, base=1), "text_embeddings.LayerNorm.bias": r(D),
        "text_embeddings.position_ids": torch.arange(T)[None],
        "itc_image_proj.fc.weight": r(D, D), "itc_text_proj.fc.weight": r(D, D),
        "itc_vl_image_proj.fc.weight": r(D, D), "itc_vl_text_proj.fc.weight": r(D, D),
        "pooler.dense.weight": r(D, D), "pooler.dense.bias": r(D),
        "itm_score.fc.weight": r(2, D), "itm_score.fc.bias": r(2),
        "logit_scale": r(()), "logit_vl_scale": r(()),
        "mlm_score.transform.dense.weight": r(D, D), "mlm_score.decoder.weight": r(v, D),
        "mlm_score.bias": r(v),
    }
    for i in range(DEPTH):
        b = f"transformer.blocks.{i}."
        state |= {b + "norm1.weight": r(D, base=1), b + "norm1.bias": r(D),
                  b + "attn.qkv.weight": r(3 * D, D), b + "attn.q_bias": r(D),
                  b + "attn.v_bias": r(D), b + "attn.proj.weight": r(D, D),
                  b + "attn.proj.bias": r(D), b + "gamma_1": r(D, base=0.5),
                  b + "gamma_2": r(D, base=0.5)}
        for e in ("imag", "text", "vl") if i >= VL_START else ("imag", "text"):
            state |= {f"{b}norm2_{e}.weight": r(D, base=1), f"{b}norm2_{e}.bias": r(D),
                      f"{b}mlp_{e}.fc1.weight": r(HIDDEN, D), f"{b}mlp_{e}.fc1.bias": r(HIDDEN),
                      f"{b}mlp_{e}.fc2.weight": r(D, HIDDEN), f"{b}mlp_{e}.fc2.bias": r(D)}
    return state


def official_text_index(length: int) -> torch.Tensor:
    """vlmo_module.build_relative_position_embed's text index, one entry at a time."""
    index = torch.zeros(length, length, dtype=torch.long)
    for i in range(length):
        for j in range(length):
            if i == 0 and j == 0:
                index[i, j] = TABLE_ROWS - 1
            elif i == 0:
                index[i, j] = TABLE_ROWS - 3
            elif j == 0:
                index[i, j] = TABLE_ROWS - 2
            else:  # (position_j - position_i) - min_distance + num_relative_distance + 2
                index[i, j] = ((j - 1) - (i - 1)) - (2 - T0) + IMAGE_ROWS + 2
    return index


def official_fused_index(length: int) -> torch.Tensor:
    from timm.models.beit import gen_relative_position_index

    image, text = gen_relative_position_index((GRID, GRID)), official_text_index(length)
    n = image.shape[0]
    index = torch.zeros(length + n, length + n, dtype=torch.long)
    for i in range(length + n):
        for j in range(length + n):
            if i < length and j < length:
                index[i, j] = text[i, j]
            elif i < length:
                index[i, j] = IMAGE_ROWS  # text -> image
            elif j < length:
                index[i, j] = IMAGE_ROWS + 1  # image -> text
            else:
                index[i, j] = image[i - length, j - length]
    return index


def beit_block(state, i: int, expert: str) -> nn.Module:
    """timm's BEiT block carrying VLMo block i's attention and one of its experts."""
    from timm.models.beit import Block

    block = Block(D, H, qkv_bias=True, mlp_ratio=HIDDEN / D, init_values=0.1).eval()
    b = f"transformer.blocks.{i}."
    ours = {k[len(b):]: v for k, v in state.items() if k.startswith(b) and "2_" not in k
            and "mlp_" not in k}
    ours |= {f"norm2.{p}": state[f"{b}norm2_{expert}.{p}"] for p in ("weight", "bias")}
    ours |= {f"mlp.{fc}.{p}": state[f"{b}mlp_{expert}.{fc}.{p}"] for fc in ("fc1", "fc2")
             for p in ("weight", "bias")}
    block.load_state_dict(ours)
    return block


def beit_model(state) -> nn.Module:
    """timm BEiT = VLMo's image path: the modality embedding of images, added to every token,
    takes the place of an absolute position embedding; each block keeps its table slice."""
    from timm.models.beit import Beit

    beit = Beit(img_size=32, patch_size=8, embed_dim=D, depth=DEPTH, num_heads=H,
                mlp_ratio=HIDDEN / D, qkv_bias=True, use_abs_pos_emb=True, use_rel_pos_bias=True,
                init_values=0.1, global_pool="token", num_classes=0).eval()
    ours = {"patch_embed.proj.weight": state["transformer.patch_embed.proj.weight"],
            "patch_embed.proj.bias": state["transformer.patch_embed.proj.bias"],
            "cls_token": state["transformer.cls_token"],
            "pos_embed": state["token_type_embeddings.weight"][1].expand(1, GRID * GRID + 1, D),
            "norm.weight": state["transformer.norm.weight"],
            "norm.bias": state["transformer.norm.bias"]}
    for i in range(DEPTH):
        block = beit_block(state, i, "imag").state_dict()
        ours |= {f"blocks.{i}.{k}": v for k, v in block.items()}
        ours[f"blocks.{i}.attn.relative_position_bias_table"] = \
            state["relative_position_bias_table"][:IMAGE_ROWS, i * H:(i + 1) * H]
    beit.load_state_dict(ours)
    return beit


def layer_bias(state, index, i: int, key_mask) -> torch.Tensor:
    table = state["relative_position_bias_table"][:, i * H:(i + 1) * H]
    bias = table[index].permute(2, 0, 1)[None]  # (1, H, L, L)
    return torch.where(key_mask[:, None, None, :].bool(), bias, float("-inf"))


def expert(state, i: int, name: str, x) -> torch.Tensor:
    b = f"transformer.blocks.{i}."
    h = F.layer_norm(x, (D,), state[f"{b}norm2_{name}.weight"], state[f"{b}norm2_{name}.bias"],
                     eps=1e-6)
    h = F.gelu(F.linear(h, state[f"{b}mlp_{name}.fc1.weight"], state[f"{b}mlp_{name}.fc1.bias"]))
    return F.linear(h, state[f"{b}mlp_{name}.fc2.weight"], state[f"{b}mlp_{name}.fc2.bias"])


def text_embeddings(state, ids) -> torch.Tensor:
    x = state["text_embeddings.word_embeddings.weight"][ids]
    x = x + state["text_embeddings.token_type_embeddings.weight"][0]
    x = F.layer_norm(x, (D,), state["text_embeddings.LayerNorm.weight"],
                     state["text_embeddings.LayerNorm.bias"], eps=1e-12)
    return x + state["token_type_embeddings.weight"][0]


def final_norm(state, x) -> torch.Tensor:
    return F.layer_norm(x, (D,), state["transformer.norm.weight"], state["transformer.norm.bias"],
                        eps=1e-6)


@torch.no_grad()
def vlmo_text_reference(state, ids, mask) -> torch.Tensor:
    x, index = text_embeddings(state, ids), official_text_index(ids.shape[1])
    for i in range(DEPTH):
        x = beit_block(state, i, "text")(x, shared_rel_pos_bias=layer_bias(state, index, i, mask))
    return final_norm(state, x)[:, 0] @ state["itc_text_proj.fc.weight"].T


@torch.no_grad()
def vlmo_itm_reference(state, pixels, ids, mask) -> torch.Tensor:
    patches = F.conv2d(pixels, state["transformer.patch_embed.proj.weight"],
                       state["transformer.patch_embed.proj.bias"], stride=8)
    image = torch.cat([state["transformer.cls_token"].expand(len(pixels), -1, -1),
                       patches.flatten(2).transpose(1, 2)], dim=1)
    image = image + state["token_type_embeddings.weight"][1]
    n = ids.shape[1]
    x = torch.cat([text_embeddings(state, ids), image], dim=1)
    key_mask = torch.cat([mask.bool(), torch.ones(image.shape[:2], dtype=torch.bool)], dim=1)
    index = official_fused_index(n)
    for i in range(DEPTH):
        block = beit_block(state, i, "imag")
        b = f"transformer.blocks.{i}."
        attn = block.attn(block.norm1(x), shared_rel_pos_bias=layer_bias(state, index, i,
                                                                          key_mask))
        x = x + state[b + "gamma_1"] * attn
        if i >= VL_START:
            x = x + state[b + "gamma_2"] * expert(state, i, "vl", x)
        else:
            x = torch.cat([x[:, :n] + state[b + "gamma_2"] * expert(state, i, "text", x[:, :n]),
                           x[:, n:] + state[b + "gamma_2"] * expert(state, i, "imag", x[:, n:])],
                          dim=1)
    cls = final_norm(state, x)[:, 0]
    pooled = torch.tanh(F.linear(cls, state["pooler.dense.weight"], state["pooler.dense.bias"]))
    return F.linear(pooled, state["itm_score.fc.weight"], state["itm_score.fc.bias"])


@pytest.fixture(scope="module")
def vlmo():
    state = vlmo_official_state()
    model = VLMo(**VLMO_TINY, tokenizer=tiny_tokenizer()).eval()
    model.load_state_dict(VLMo.convert(state), strict=True)
    return model, state


@torch.no_grad()
def test_vlmo_image_path_equals_timm_beit(vlmo):
    model, state = vlmo
    x = images(2)
    feats = model.forward_image(x, layers=(1,))
    beit = beit_model(state)
    want = beit.forward_features(x)
    torch.testing.assert_close(feats.pooled, want[:, 0])
    torch.testing.assert_close(feats.tokens, want[:, 1:])
    torch.testing.assert_close(feats.projected, want[:, 0] @ state["itc_image_proj.fc.weight"].T)
    h = torch.cat([beit.cls_token.expand(2, -1, -1), beit.patch_embed(x)], 1) + beit.pos_embed
    second = beit.norm(beit.blocks[1](beit.blocks[0](h)))
    torch.testing.assert_close(feats.layers[0].cls, second[:, 0])


@torch.no_grad()
def test_vlmo_text_path_equals_beit_blocks_with_the_official_text_index(vlmo):
    model, state = vlmo
    ids, mask = encode_ids(TEXTS, T, "max_length")  # the official data pads to max_text_len
    assert not mask.all()
    want = vlmo_text_reference(state, ids, mask)
    torch.testing.assert_close(model.text_embed_ids(ids, mask.bool()), want)
    torch.testing.assert_close(model.forward_text(TEXTS), want)
    short_ids, short_mask = encode_ids(TEXTS, T, "longest")  # shorter: the index is sliced
    torch.testing.assert_close(model.text_embed_ids(short_ids, short_mask.bool()),
                               vlmo_text_reference(state, short_ids, short_mask))


@torch.no_grad()
def test_vlmo_itm_equals_fused_reference(vlmo):
    model, state = vlmo
    x = images(3, seed=3)
    ids, mask = encode_ids(TEXTS, T, "max_length")
    want = vlmo_itm_reference(state, x, ids, mask)
    torch.testing.assert_close(model.itm_logits(x, ids, mask), want)  # an integer mask too
    torch.testing.assert_close(model.itm_scores(x, TEXTS), want.softmax(-1)[:, 1])


def test_vlmo_convert_keeps_exactly_the_encoding_weights(vlmo):
    model, state = vlmo
    assert set(VLMo.convert(state)) == set(model.state_dict())
    deepspeed = VLMo.convert({f"module.{k}": v for k, v in state.items()})
    assert deepspeed.keys() == VLMo.convert(state).keys()
    assert VLMo.convert(model.state_dict()).keys() == model.state_dict().keys()
    with pytest.raises(VitbenchError, match="unexpected key"):
        VLMo.convert({**state, "vqa_classifier.0.weight": torch.zeros(1)})


@torch.no_grad()
def test_vlmo_loads_both_layouts_through_the_adapter(vlmo, tmp_path):
    model, state = vlmo
    entry = reference_entry("vlmo_b16", VLMO_TINY, 32)
    official = tmp_path / "vlmo_base_patch16_224.pt"  # a Lightning checkpoint
    torch.save({"state_dict": state, "epoch": 9, "global_step": 200000}, official)
    ours = tmp_path / "ours.safetensors"
    save_file(model.state_dict(), ours)
    x = images(2, seed=4)
    want = model.forward_image(x)
    for path in (official, ours):
        got = load_file(entry, path).encode_image(x)
        torch.testing.assert_close(got.pooled, want.pooled)
        torch.testing.assert_close(got.projected, want.projected)
    with pytest.raises(VitbenchError, match="cannot run at 48 px"):
        load_file(entry, ours, resolution=48)


# =============================================================================================
# both: tokenizer, errors, spec facts, published sizes

MODELS = {"albef_b16": (ALBEF, ALBEF_TINY), "vlmo_b16": (VLMo, VLMO_TINY)}


@pytest.mark.parametrize("name", MODELS)
def test_tokenizer_comes_from_the_weights_directory(name, albef, vlmo, tmp_path):
    model = (albef if name == "albef_b16" else vlmo)[0]
    cls, kwargs = MODELS[name]
    fresh = cls(**kwargs).eval()
    fresh.load_state_dict(model.state_dict())
    with pytest.raises(VitbenchError, match="tokenizer") as info:
        fresh.forward_text(TEXTS)
    assert "\n" not in str(info.value)
    fresh.use_weights_dir(tmp_path)  # no tokenizer files there: still none
    assert fresh.tokenizer is None
    tiny_tokenizer().save_pretrained(tmp_path)
    fresh.use_weights_dir(tmp_path / "model.safetensors")  # a weights file: its directory
    with torch.no_grad():
        torch.testing.assert_close(fresh.forward_text(TEXTS), model.forward_text(TEXTS))
    with pytest.raises(VitbenchError, match="no tokenizer files"):
        fresh.set_tokenizer(tmp_path / "nowhere")


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_is_a_one_line_error(name, albef, vlmo):
    model = (albef if name == "albef_b16" else vlmo)[0]
    other = (vlmo if name == "albef_b16" else albef)[0]
    errors = []
    with pytest.raises(VitbenchError) as info:
        model.itm_scores(images(2), TEXTS)
    errors.append(info)
    with pytest.raises(VitbenchError, match="list of strings") as info:
        model.forward_text("a cat")
    errors.append(info)
    with pytest.raises(VitbenchError) as info:
        model.forward_image(images(1), layers=(9,))
    errors.append(info)
    with pytest.raises(VitbenchError) as info:
        model.forward_image(images(1, size=48))
    errors.append(info)
    with pytest.raises(VitbenchError, match="do not fit") as info:
        load_into(model, type(model).convert(other.state_dict()), "weights x", name)
    errors.append(info)
    assert all("\n" not in str(e.value) for e in errors)


@pytest.mark.parametrize("name", MODELS)
def test_offline_without_weights_is_a_one_line_error(name):
    with pytest.raises(VitbenchError, match=f"{name}.* unavailable") as info:
        vitbench.load(name)
    assert "--weights" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", MODELS)
def test_spec_facts_are_measured_on_the_meta_device(name):
    from torch.utils.flop_counter import FlopCounterMode

    spec = get_entry(name).spec
    cls = MODELS[name][0]
    with torch.device("meta"):
        model = cls()
        x = torch.zeros(1, 3, spec.input_size, spec.input_size)
    params = sum(p.numel() for p in model.image_tower().parameters()) / 1e6
    assert params == pytest.approx(spec.params_m, abs=0.005)
    with FlopCounterMode(display=False) as counter:
        feats = model.forward_image(x)
    assert round(counter.get_total_flops() / 2 / 1e9, 2) == spec.gflops
    n_patches = (spec.input_size // spec.patch_size) ** 2
    assert feats.pooled.shape == (1, spec.embed_dim)
    assert feats.tokens.shape == (1, n_patches, spec.embed_dim)
    assert feats.projected.shape == (1, spec.projection_dim)


def test_full_sizes_match_published_parameter_counts():
    with torch.device("meta"):
        albef_224, vlmo = ALBEF(img_size=224), VLMo()

    def count(params) -> float:
        return sum(p.numel() for p in params) / 1e6

    # ALBEF paper (arXiv:2107.07651, Sec. 3.5): "a ViT-B/16 with 85.8M parameters"
    assert count(albef_224.visual.parameters()) == pytest.approx(85.8, abs=0.05)
    # ... and "a BERT-base with 123.7M parameters" (6 text + 6 fusion layers with
    # cross-attention); ALBEF drops BERT's 0.6M pooler, which that figure appears to include
    bert = [p for n, p in albef_224.named_parameters() if n.startswith(("embeddings", "layers"))]
    assert count(bert) == pytest.approx(123.7, rel=0.01)
    # VLMo README: VLMo-Base "#parameters: 175M" (the multiway transformer and embeddings;
    # the task heads add 1.8M)
    heads = ("itc_image_proj", "itc_text_proj", "pooler", "itm_head")
    body = [p for n, p in vlmo.named_parameters() if not n.startswith(heads)]
    assert count(body) == pytest.approx(175, rel=0.01)
    assert get_entry("albef_b16").spec.published_params_m == 85.8


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_full_size_loads_official_and_own_layout(name, tmp_path):
    """Full-size models through vitbench.load: official layout (.pth) and own (safetensors)."""
    spec = get_entry(name).spec
    cls = MODELS[name][0]
    torch.manual_seed(0)
    model = cls().eval()
    perturb(model, 5, scale=0.01)
    own = tmp_path / "own"
    own.mkdir()
    save_file(model.state_dict(), own / "model.safetensors")
    x = images(1, size=spec.input_size)
    with torch.no_grad():
        want = model.forward_image(x)
    got = vitbench.load(name, pretrained=own).encode_image(x)
    torch.testing.assert_close(got.pooled, want.pooled)
    torch.testing.assert_close(got.projected, want.projected)
    if name == "albef_b16":
        official = {("visual_encoder." + k.removeprefix("visual.")): v
                    for k, v in model.state_dict().items() if k.startswith("visual.")}
        official |= {k: v for k, v in model.state_dict().items()
                     if k.startswith(("vision_proj", "text_proj", "itm_head"))}
        official |= _albef_text_official(model)
        torch.save({"model": official}, tmp_path / "ALBEF.pth")
        got = vitbench.load(name, pretrained=tmp_path / "ALBEF.pth").encode_image(x)
        torch.testing.assert_close(got.pooled, want.pooled)


def _albef_text_official(model: ALBEF) -> dict[str, torch.Tensor]:
    """Our text weights under BERT's names (written out from xbert.py's module names)."""
    names = {"attn.q": "attention.self.query", "attn.k": "attention.self.key",
             "attn.v": "attention.self.value", "attn.o": "attention.output.dense",
             "attn_norm": "attention.output.LayerNorm", "cross.q": "crossattention.self.query",
             "cross.k": "crossattention.self.key", "cross.v": "crossattention.self.value",
             "cross.o": "crossattention.output.dense",
             "cross_norm": "crossattention.output.LayerNorm", "fc1": "intermediate.dense",
             "fc2": "output.dense", "ffn_norm": "output.LayerNorm"}
    embeddings = {"word": "word_embeddings", "position": "position_embeddings",
                  "token_type": "token_type_embeddings", "norm": "LayerNorm"}
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("embeddings."):
            part, _, tail = key.removeprefix("embeddings.").partition(".")
            out[f"text_encoder.bert.embeddings.{embeddings[part]}.{tail}"] = value
        elif key.startswith("layers."):
            i, rest = key.removeprefix("layers.").split(".", 1)
            module, _, tail = rest.rpartition(".")
            out[f"text_encoder.bert.encoder.layer.{i}.{names[module]}.{tail}"] = value
    return out
