"""BLIP reference wrapper (zoo/reference/blip.py) against transformers' own
BlipForImageTextRetrieval on the same weights: image features, ITC text embeddings and
similarities, ITM scores, per-layer outputs, other resolutions; and the official checkpoint
layout (written out here from salesforce/BLIP's vit.py names) through `convert`.
Tiny configurations; the full-size entries are built on the meta device only.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import vitbench
from vitbench.errors import VitbenchError
from vitbench.zoo.reference.blip import BlipRetrieval
from vitbench.zoo.registry import Entry, build, get_entry
from vitbench.zoo.weights import WeightsRequest

SIZE, PATCH, WIDTH = 32, 8, 32
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "red", "square",
         "photo", "of", "the", "##s", "on", "grass"]
TINY = {"vision_config": {"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "image_size": SIZE, "patch_size": PATCH,
                          "initializer_range": 0.02},
        "text_config": {"vocab_size": len(WORDS) + 2, "hidden_size": 24,
                        "num_attention_heads": 4, "num_hidden_layers": 2,
                        "intermediate_size": 48, "encoder_hidden_size": WIDTH,
                        "max_position_embeddings": 40, "bos_token_id": len(WORDS),
                        "sep_token_id": 3},
        "image_text_hidden_size": 16}
TEXTS = ["a photo of a cat", "the red squares on grass"]


def _tokenizer(directory=None):
    """bert-base-uncased style WordPiece + [DEC] + [ENC], as BLIP's init_tokenizer builds it."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    if directory is not None:
        tokenizer.save_pretrained(directory)
    return tokenizer


def _hf(directory=None, seed=1):
    """transformers' own model, randomly initialised (other seed than vitbench's)."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(BlipConfig(**TINY)).eval()
    if directory is not None:
        model.save_pretrained(directory)
        _tokenizer(directory)
    return model


def _entry():
    spec = dataclasses.replace(get_entry("blip_b16").spec, name="blip_tiny", input_size=SIZE,
                               patch_size=PATCH, embed_dim=WIDTH, projection_dim=16)
    return Entry(spec, {"factory": "blip:BlipRetrieval", "kwargs": {"config": TINY}})


def _load(path, resolution=SIZE):
    encoder = build(_entry(), WeightsRequest("file", path.name, path), resolution)
    encoder.model.use_weights_dir(path)  # the loader hook (an explicit call is a no-op after)
    return encoder


def _batch(texts=TEXTS):
    batch = _tokenizer()(texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("blip")
    return _hf(directory), directory


def test_image_features_equal_transformers(saved):
    hf, directory = saved
    encoder = _load(directory)
    x = torch.randn(2, 3, SIZE, SIZE)
    got = encoder.encode_image(x)
    with torch.no_grad():
        hidden = hf.vision_model(pixel_values=x).last_hidden_state
    torch.testing.assert_close(got.pooled, hidden[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.tokens, hidden[:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.projected, hf.vision_proj(hidden[:, 0]).detach(),
                               rtol=1e-5, atol=1e-5)
    assert got.projected.shape == (2, 16)


def test_text_embeddings_and_itc_scores_equal_transformers(saved):
    hf, directory = saved
    encoder = _load(directory)
    x = torch.randn(2, 3, SIZE, SIZE)
    text = encoder.encode_text(TEXTS)
    ids, mask = _batch()
    with torch.no_grad():
        cls = hf.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        itc = hf(input_ids=ids, pixel_values=x, attention_mask=mask, use_itm_head=False)
    torch.testing.assert_close(text, hf.text_proj(cls).detach(), rtol=1e-5, atol=1e-5)
    image = encoder.encode_image(x).projected
    ours = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    torch.testing.assert_close(ours, itc.itm_score, rtol=1e-5, atol=1e-5)


def test_text_padded_as_the_official_code_gives_the_same_embedding(saved):
    """The official code pads to 35 tokens, vitbench to the longest text: same [CLS]."""
    hf, directory = saved
    encoder = _load(directory)
    batch = _tokenizer()(TEXTS, padding="max_length", max_length=35, return_tensors="pt")
    with torch.no_grad():
        cls = hf.text_encoder(input_ids=batch["input_ids"],
                              attention_mask=batch["attention_mask"]).last_hidden_state[:, 0]
    torch.testing.assert_close(encoder.encode_text(TEXTS), hf.text_proj(cls).detach(),
                               rtol=1e-5, atol=1e-5)


def test_itm_scores_equal_transformers_with_cls_and_with_enc(saved):
    hf, directory = saved
    encoder = _load(directory)
    x = torch.randn(2, 3, SIZE, SIZE)
    ids, mask = _batch()
    with torch.no_grad():
        plain = hf(input_ids=ids, pixel_values=x, attention_mask=mask).itm_score
        enc_ids = ids.clone()
        enc_ids[:, 0] = _tokenizer().convert_tokens_to_ids("[ENC]")
        enc = hf(input_ids=enc_ids, pixel_values=x, attention_mask=mask).itm_score
        got_plain = encoder.model.itm_scores(x, TEXTS, enc_token=False)
        got_enc = encoder.model.itm_scores(x, TEXTS)
    torch.testing.assert_close(got_plain, plain.softmax(-1)[:, 1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_enc, enc.softmax(-1)[:, 1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got_plain, got_enc)  # [ENC] and [CLS] really differ
    with pytest.raises(VitbenchError, match="row by row"):
        encoder.model.itm_scores(x, TEXTS[:1])


def test_per_layer_outputs_and_other_resolutions(saved):
    hf, directory = saved
    x = torch.randn(1, 3, SIZE, SIZE)
    got = _load(directory).encode_image(x, layers=[0, -1])
    with torch.no_grad():
        out = hf.vision_model(pixel_values=x, output_hidden_states=True)
        first = hf.vision_model.post_layernorm(out.hidden_states[1])
    torch.testing.assert_close(got.layers[0].cls, first[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.layers[1].tokens, out.last_hidden_state[:, 1:],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(VitbenchError, match="layers must be block indices"):
        _load(directory).encode_image(x, layers=[5])
    bigger = torch.randn(1, 3, 48, 48)
    got = _load(directory, resolution=48).encode_image(bigger)
    with torch.no_grad():
        want = hf.vision_model(pixel_values=bigger, interpolate_pos_encoding=True)
    torch.testing.assert_close(got.tokens, want.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)


# -- the official checkpoint layout -----------------------------------------------------------

def _official(hf_state):
    """transformers' keys -> salesforce/BLIP's (vit.py names under visual_encoder; the text
    encoder's BERT names are shared), plus what the retrieval checkpoint also carries."""
    vit = {"embeddings.class_embedding": "cls_token", "embeddings.position_embedding": "pos_embed",
           "embeddings.patch_embedding": "patch_embed.proj", "post_layernorm": "norm",
           "layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.qkv": "attn.qkv",
           "self_attn.projection": "attn.proj", "encoder.layers": "blocks", "mlp": "mlp"}
    out = {}
    for key, value in hf_state.items():
        if key.startswith("vision_model."):
            parts = key.removeprefix("vision_model.")
            for hf_name, name in vit.items():
                parts = parts.replace(hf_name, name)
            out[f"visual_encoder.{parts}"] = value
            out[f"visual_encoder_m.{parts}"] = value + 1  # momentum copies are not read
        else:
            out[key] = value
    out["text_encoder.embeddings.position_ids"] = torch.arange(40)[None]
    out["text_encoder_m.embeddings.word_embeddings.weight"] = torch.zeros(3, 3)
    out.update({"image_queue": torch.zeros(16, 8), "text_queue": torch.zeros(16, 8),
                "idx_queue": torch.zeros(1, 8), "ptr_queue": torch.zeros(1),
                "temp": torch.ones(())})
    return out


def test_convert_maps_the_official_checkpoint(saved, tmp_path):
    hf, _ = saved
    official = _official(hf.state_dict())
    assert "visual_encoder.blocks.1.attn.qkv.weight" in official  # the vit.py names
    converted = BlipRetrieval.convert(official)
    assert set(converted) == set(hf.state_dict())
    for key, value in hf.state_dict().items():
        torch.testing.assert_close(converted[key], value, msg=key)
    torch.save({"model": official}, tmp_path / "model_base_retrieval_coco.pth")
    encoder = _load(tmp_path / "model_base_retrieval_coco.pth")
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        want = hf.vision_model(pixel_values=x).last_hidden_state[:, 0]
    torch.testing.assert_close(encoder.encode_image(x).pooled, want, rtol=1e-5, atol=1e-5)


def test_errors_are_one_line(saved, tmp_path):
    _, directory = saved
    encoder = build(_entry(), WeightsRequest("random", "random"), SIZE)
    with pytest.raises(VitbenchError, match="tokenizer") as info:
        encoder.encode_text(TEXTS)
    assert "\n" not in str(info.value)
    encoder.model.set_tokenizer(directory)  # a directory with the tokenizer files
    assert encoder.encode_text(TEXTS).shape == (2, 16)
    from transformers import BertTokenizer

    encoder.model.set_tokenizer(BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}))
    with pytest.raises(VitbenchError, match="no \\[ENC\\] token"):
        encoder.model.itm_scores(torch.randn(2, 3, SIZE, SIZE), TEXTS)
    torch.save({"model": {"visual_encoder.cls_token": torch.zeros(1, 1, WIDTH)}},
               tmp_path / "partial.pth")
    with pytest.raises(VitbenchError, match="do not fit blip_tiny") as info:
        _load(tmp_path / "partial.pth")
    assert "\n" not in str(info.value)


# -- the registered entries -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["blip_b16", "blip_l16"])
def test_registered_entries_on_meta(name):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    entry = get_entry(name)
    spec = entry.spec
    kwargs = entry.build_args["kwargs"]
    with torch.device("meta"):
        model = BlipRetrieval(**kwargs)
        theirs = BlipForImageTextRetrieval(BlipConfig(**kwargs["config"]))
    assert sum(p.numel() for p in model.image_tower().parameters()) / 1e6 == pytest.approx(
        spec.params_m, abs=0.01)
    total = sum(p.numel() for p in theirs.parameters())
    assert total == sum(p.numel() for p in model.parameters())  # nothing left out
    assert spec.weights.size_mb == round(total * 4 / 1e6)
    with FlopCounterMode(display=False) as flops:
        out = model.forward_image(torch.empty(1, 3, 384, 384, device="meta"))
    assert flops.get_total_flops() / 2 / 1e9 == pytest.approx(spec.gflops, abs=0.01)
    assert out.pooled.shape == (1, spec.embed_dim) and out.tokens.shape == (1, 576, spec.embed_dim)
    assert out.projected.shape == (1, spec.projection_dim)
    assert theirs.config.vision_config.image_size == spec.input_size


def test_transform_equals_blip_image_processor():
    import numpy as np
    from PIL import Image
    from transformers import BlipImageProcessor

    from vitbench.zoo.transforms import make_transform

    transform = make_transform(get_entry("blip_b16").spec, 96)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (97, 131, 3), dtype=np.uint8))
    processor = BlipImageProcessor(size={"height": 96, "width": 96})
    theirs = processor(image, return_tensors="pt")["pixel_values"][0]
    ours = transform(image)
    torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=0)  # PIL vs processor rounding
    assert (ours - theirs).abs().mean() < 2e-3


def test_published_weights_offline_name_the_hub_repo():
    with pytest.raises(VitbenchError, match="Salesforce/blip-itm-base-coco") as info:
        vitbench.load("blip_b16")
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blip_b16", "blip_l16"])
def test_full_size_random_build(name):
    encoder = vitbench.load(name, pretrained=False)
    out = encoder.encode_image(torch.randn(1, 3, 384, 384))
    assert out.projected.shape == (1, 256) and torch.isfinite(out.pooled).all()
