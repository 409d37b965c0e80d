"""Feature cache: hits, misses, invalidation, resume after a kill, and bad images."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import vitbench
from vitbench import features as F
from vitbench.data import get_dataset
from vitbench.errors import BadImageError, VitbenchError
from vitbench.features import ExtractOptions, extract_features


@pytest.fixture
def options(tmp_path):
    return ExtractOptions(batch_size=100, cache_dir=str(tmp_path / "cache"), progress=False)


@pytest.fixture
def encoder():
    return vitbench.load("test_vit", pretrained=False, resolution=32)


def _direct(encoder, dataset):
    pixels = torch.stack([encoder.transform(dataset.image(i)) for i in range(len(dataset))])
    return encoder.encode_image(pixels).pooled.numpy()


def test_miss_then_hit_equals_direct_encoding(encoder, options):
    dataset = get_dataset("digits", "test")
    first = extract_features(encoder, dataset, ("pooled",), options)
    second = extract_features(encoder, dataset, ("pooled",), options)
    assert not first.cache_hit and second.cache_hit and second.seconds == 0
    np.testing.assert_allclose(first.pooled, _direct(encoder, dataset), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(first.pooled, second.pooled)
    np.testing.assert_array_equal(second.index, np.arange(len(dataset)))


def test_key_changes_with_weights_file_resolution_dtype_and_data(tmp_path, options):
    import timm

    path = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), path)
    dataset = get_dataset("digits", "test")
    key = extract_features(vitbench.load("test_vit", path, resolution=32), dataset,
                           ("pooled",), options).key
    torch.manual_seed(1)  # same file name, new content: must not be served the old features
    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), path)
    keys = {
        "new weights": vitbench.load("test_vit", path, resolution=32),
        "resolution": vitbench.load("test_vit", path, resolution=48),
        "dtype": vitbench.load("test_vit", path, resolution=32, dtype="bf16"),
    }
    for what, other in keys.items():
        assert F.cache_key(other, dataset, ("pooled",))[0] != key, what
    assert F.cache_key(keys["new weights"], get_dataset("digits", "train"), ("pooled",))[0] != key
    fresh = extract_features(keys["new weights"], dataset, ("pooled",), options)
    assert not fresh.cache_hit


class _Killed(Exception):
    pass


def test_resume_after_interrupted_run(encoder, options, monkeypatch):
    dataset = get_dataset("digits", "test")
    monkeypatch.setattr(F, "SHARD_SIZE", 128)
    calls = []
    real = F._encode_range

    def dies_on_third_shard(enc, ds, kinds, rows, opts):
        calls.append(rows.start)
        if len(calls) == 3:
            raise _Killed
        return real(enc, ds, kinds, rows, opts)

    monkeypatch.setattr(F, "_encode_range", dies_on_third_shard)
    with pytest.raises(_Killed):
        extract_features(encoder, dataset, ("pooled",), options)
    entry = next((F.cache_root(options.cache_dir) / "features").iterdir())
    assert len(list(entry.glob("shard-*.safetensors"))) == 2
    assert not (entry / "complete.json").exists()
    (entry / ".shard-00002.safetensors.123.tmp").write_bytes(b"half a shard")  # a killed write
    calls.clear()
    monkeypatch.setattr(F, "_encode_range", real)
    resumed = extract_features(encoder, dataset, ("pooled",), options)
    assert not resumed.cache_hit
    np.testing.assert_allclose(resumed.pooled, _direct(encoder, dataset), rtol=1e-5, atol=1e-5)
    assert len(list(entry.glob("shard-*.safetensors"))) == -(-len(dataset) // 128)


def _folder_with_bad_images(root):
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(4):
            colour = (255 * (cls == "a"), 0, 255 * (cls == "b"))
            Image.new("RGB", (16, 16), colour).save(root / "train" / cls / f"{i}.png")
    (root / "train" / "a" / "empty.png").write_bytes(b"")
    (root / "train" / "b" / "garbage.jpg").write_bytes(b"not an image at all")
    return root


def test_bad_images_fail_with_path_or_skip_when_asked(tmp_path, encoder, options):
    dataset = get_dataset("folder", "train", _folder_with_bad_images(tmp_path / "data"))
    with pytest.raises(BadImageError, match="empty.png"):
        extract_features(encoder, dataset, ("pooled",), options)
    skipping = ExtractOptions(**{**options.__dict__, "skip_bad_images": True})
    feats = extract_features(encoder, dataset, ("pooled",), skipping)
    assert feats.n_bad == 2 and len(feats.index) == 8 == len(feats.pooled)
    names = [dataset.describe(i) for i in feats.index]
    assert not any(n.endswith(("empty.png", "garbage.jpg")) for n in names)
    # features cached by the skipping run must not hide bad images from a strict run
    with pytest.raises(BadImageError, match="empty.png"):
        extract_features(encoder, dataset, ("pooled",), options)


def test_workers_give_the_same_features(encoder, options):
    dataset = get_dataset("digits", "test")
    one = extract_features(encoder, dataset, ("pooled",),
                           ExtractOptions(batch_size=64, use_cache=False, progress=False))
    two = extract_features(encoder, dataset, ("pooled",),
                           ExtractOptions(batch_size=64, num_workers=2, use_cache=False,
                                          progress=False))
    np.testing.assert_array_equal(one.pooled, two.pooled)


def test_unknown_kind_and_cache_location(monkeypatch, tmp_path, encoder, options):
    with pytest.raises(VitbenchError, match="accepted"):
        extract_features(encoder, get_dataset("digits", "test"), ("logits",), options)
    monkeypatch.delenv("VITBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert F.cache_root() == tmp_path / "xdg" / "vitbench"
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path / "env"))
    assert F.cache_root() == tmp_path / "env"
    assert F.cache_root(str(tmp_path / "flag")) == tmp_path / "flag"
