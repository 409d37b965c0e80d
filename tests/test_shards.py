"""Webdataset tar shards as a dataset: samples grouped by key, random access, pretraining."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

import vitbench
from vitbench.data import get_dataset
from vitbench.errors import VitbenchError
from vitbench.pretrain.trainer import TrainConfig, train


def _write_shard(path, samples):
    """samples: (key, rgb array, caption lines, label or None), written as webdataset does."""
    with tarfile.open(path, "w") as tar:
        for key, pixels, captions, label in samples:
            members = [("png", _png(pixels)), ("txt", "\n".join(captions).encode())]
            if label is not None:
                members.append(("cls", str(label).encode()))
            for suffix, data in members:
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    expected = []
    for split, n_shards in (("train", 2), ("val", 1)):
        (tmp_path / split).mkdir()
        for s in range(n_shards):
            samples = []
            for i in range(10):
                pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                label = (s * 10 + i) % 3
                samples.append((f"s{s:03d}_{i:04d}", pixels, [f"caption {s} {i}", "another"],
                                label))
                if split == "train":
                    expected.append((pixels, label))
            _write_shard(tmp_path / split / f"{split}-{s:04d}.tar", samples)
    return tmp_path, expected


def test_shards_read_every_sample_in_order(shards):
    root, expected = shards
    train = get_dataset("webdataset", "train", root)
    assert len(train) == 20 and train.classes == ("0", "1", "2")
    for i, (pixels, label) in enumerate(expected):
        np.testing.assert_array_equal(np.asarray(train.image(i)), pixels)
        assert train.labels[i] == label
    assert train.captions[11] == ["caption 1 1", "another"]
    assert len(get_dataset("webdataset", "test", root)) == 10  # "test" finds "val"


def test_shards_pretrain_and_errors(shards, tmp_path):
    root, _ = shards
    out = train(TrainConfig("clip", "vit_pico", data="webdataset", data_dir=str(root), steps=2,
                            batch_size=8, out=str(tmp_path / "run")))
    assert vitbench.load(str(out)).spec.supervision.value == "weakly"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.tar").write_bytes(b"not a tar file at all" * 30)
    with pytest.raises(VitbenchError, match="not a readable webdataset shard"):
        get_dataset("webdataset", "train", tmp_path / "broken")
    (tmp_path / "mute").mkdir()  # images only: image-text objectives say what is missing
    rng = np.random.default_rng(1)
    _write_shard(tmp_path / "mute" / "a.tar",
                 [(f"k{i}", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), [], 0)
                  for i in range(8)])
    with pytest.raises(VitbenchError, match="has no captions"):
        train(TrainConfig("clip", "vit_pico", data="webdataset", steps=1, batch_size=8,
                          data_dir=str(tmp_path / "mute"), out=str(tmp_path / "mute_run")))
