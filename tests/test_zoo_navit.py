"""navit_b16: NaViT-style variable-size batches through timm's NaFlexVit.

Each image keeps its aspect ratio and its own patch count. Checked against independent
computations: timm's own NaFlex transform and its sequence-size search, timm's own patchify +
collate + masked forward, and the standard (one image, B=1) forward of each image alone. The
timm model gets random layer-scale gammas near 1: with the released init (1e-5) the residual
branches are almost silent and a leak between images would hide below the tolerance.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import vitbench
from vitbench.data.base import ImageDataset
from vitbench.errors import VitbenchError
from vitbench.features import ExtractOptions, extract_features
from vitbench.zoo.registry import get_spec
from vitbench.zoo.transforms import make_transform, patch_grid

ARCH = "naflexvit_base_patch16_parfac_gap.e300_s576_in1k"
RESOLUTION = 64  # budget (64 / 16)^2 = 16 patches: small sequences, fast on two cores
SHAPES = [(40, 120), (150, 60), (64, 64)]  # (height, width) of the test images


def _image(height, width, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def timm_and_encoder(tmp_path_factory):
    """timm's model with non-trivial layer scales, and navit_b16 loaded from its weights."""
    import timm

    torch.manual_seed(11)
    model = timm.create_model(ARCH, pretrained=False).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.copy_(1 + 0.2 * torch.randn_like(param))
    path = tmp_path_factory.mktemp("navit") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    encoder = vitbench.load("navit_b16", pretrained=path, resolution=RESOLUTION)
    return model, encoder


@pytest.fixture(scope="module")
def pil_images():
    return [_image(h, w, seed) for seed, (h, w) in enumerate(SHAPES)]


@pytest.fixture(scope="module")
def images(timm_and_encoder, pil_images):
    _, encoder = timm_and_encoder
    return [encoder.transform(image) for image in pil_images]


@pytest.fixture(scope="module")
def batch(timm_and_encoder, images):
    """The mixed-size batch through vitbench (the list path)."""
    return timm_and_encoder[1].encode_image(images)


def test_patch_grid_equals_timms_sequence_search():
    from timm.data.naflex_transforms import get_image_size_for_seq

    rng = np.random.default_rng(0)
    for height, width, budget in zip(rng.integers(1, 1500, 300), rng.integers(1, 1500, 300),
                                     rng.choice([16, 196, 576, 1024], 300), strict=True):
        rows, cols = patch_grid(int(height), int(width), int(budget))
        _, (h, w) = get_image_size_for_seq((int(height), int(width)), 16, int(budget))
        assert (rows * 16, cols * 16) == (h, w)
        assert rows * cols <= budget


def test_transform_keeps_aspect_ratio_as_timms_naflex_eval():
    from timm.data.transforms_factory import transforms_imagenet_eval

    assert get_spec("navit_b16").variable_size

    for resolution in (384, RESOLUTION):
        encoder_transform = make_transform(get_spec("navit_b16"), resolution)
        theirs = transforms_imagenet_eval(naflex=True, patch_size=16, interpolation="bicubic",
                                          max_seq_len=(resolution // 16) ** 2,
                                          mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        for seed, (h, w) in enumerate(SHAPES):
            image = _image(h, w, seed)
            ours = encoder_transform(image)
            torch.testing.assert_close(ours, theirs(image))
            assert ours.shape[1] % 16 == 0 and ours.shape[2] % 16 == 0
            assert (ours.shape[1] // 16) * (ours.shape[2] // 16) <= (resolution // 16) ** 2
            # the aspect ratio survives up to rounding each side to whole patches
            assert abs(ours.shape[2] / ours.shape[1] - w / h) <= (w / h) * 16 / min(
                ours.shape[1:]) + 1e-9


def test_alone_equals_inside_a_mixed_batch_and_timms_single_forward(timm_and_encoder, images,
                                                                    batch):
    model, encoder = timm_and_encoder
    assert len({tuple(x.shape) for x in images}) == len(images)  # really mixed sizes
    longest = max((x.shape[1] // 16) * (x.shape[2] // 16) for x in images)
    assert batch.tokens.shape == (len(images), longest, 768)
    for i, x in enumerate(images):
        n = (x.shape[1] // 16) * (x.shape[2] // 16)
        assert int(batch.token_mask[i].sum()) == n and bool(batch.token_mask[i, :n].all())
        with torch.no_grad():  # timm's standard forward of this image, B = 1, no padding
            feats = model.forward_features(x[None])
            pooled = model.forward_head(feats, pre_logits=True)
        torch.testing.assert_close(batch.pooled[i], pooled[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batch.tokens[i, :n], feats[0, model.num_prefix_tokens:],
                                   rtol=1e-5, atol=1e-5)
        assert not batch.tokens[i, n:].any()  # padding rows are zeros
    alone = encoder.encode_image(images[:1])  # the list path with one image
    torch.testing.assert_close(batch.pooled[:1], alone.pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch.tokens[:1, :alone.tokens.shape[1]], alone.tokens,
                               rtol=1e-5, atol=1e-5)


def test_equals_timms_own_patchify_collate_and_masked_forward(timm_and_encoder, images,
                                                              batch):
    from timm.data.naflex_dataset import NaFlexCollator
    from timm.data.naflex_transforms import Patchify

    model, encoder = timm_and_encoder
    samples = [(Patchify(16)(x), 0) for x in images]
    inputs, _ = NaFlexCollator(max_seq_len=64)(samples)  # timm pads to its own length
    with torch.no_grad():
        out = model.forward_features(inputs["patches"], patch_coord=inputs["patch_coord"],
                                     patch_valid=inputs["patch_valid"])
        pooled = model.forward_head(out["patches"], pre_logits=True,
                                    patch_valid=out["patch_valid"])
    ours = batch
    torch.testing.assert_close(ours.pooled, pooled, rtol=1e-5, atol=1e-5)
    n = ours.tokens.shape[1]
    theirs = out["patches"][:, model.num_prefix_tokens:][:, :n] * inputs["patch_valid"][:, :n,
                                                                                      None]
    torch.testing.assert_close(ours.tokens, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.token_mask, inputs["patch_valid"][:, :n])


def test_without_the_mask_images_would_leak(timm_and_encoder, images, batch):
    """The setup can see a leak: unmasked padding changes the shorter images' features."""
    from vitbench.zoo.adapters.naflex import pack

    model, _ = timm_and_encoder
    patches, coords, valid = pack(images, 16)
    with torch.no_grad():
        out = model.forward_features(patches, patch_coord=coords,
                                     patch_valid=torch.ones_like(valid))
        leaky = model.forward_head(out["patches"], pre_logits=True, patch_valid=valid)
    masked = batch.pooled
    shorter = valid.sum(1) < valid.shape[1]
    assert (leaky[shorter] - masked[shorter]).abs().max() > 1e-3


def test_encode_pads_across_batches_and_datasets_cache_pooled_only(timm_and_encoder,
                                                                   pil_images, batch):
    _, encoder = timm_and_encoder
    pil, whole = pil_images, batch
    batched = encoder.encode(pil, batch_size=2)  # batches of different longest lengths
    torch.testing.assert_close(batched.pooled, whole.pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched.tokens, whole.tokens, rtol=1e-5, atol=1e-5)
    assert torch.equal(batched.token_mask, whole.token_mask)

    dataset = _Shapes("navit-test", "test", ("a",), np.zeros(len(pil), np.int64), "v1", pil)
    feats = extract_features(encoder, dataset, ("pooled",),
                             ExtractOptions(batch_size=2, progress=False))  # through the cache
    torch.testing.assert_close(torch.from_numpy(feats.pooled), whole.pooled, rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(VitbenchError, match="only 'pooled' and 'projected'") as info:
        extract_features(encoder, dataset, ("tokens",), ExtractOptions(use_cache=False))
    assert "\n" not in str(info.value)
    from_dataset = encoder.encode(dataset)  # tokens too, padded: not through the cache
    torch.testing.assert_close(from_dataset.tokens, whole.tokens, rtol=1e-5, atol=1e-5)
    assert torch.equal(from_dataset.token_mask, whole.token_mask)


class _Shapes(ImageDataset):
    def __init__(self, name, split, classes, labels, fingerprint, images):
        super().__init__(name, split, classes, labels, fingerprint)
        self.images = images

    def image(self, index):
        return self.images[index]


def test_one_line_errors(timm_and_encoder, images):
    _, encoder = timm_and_encoder
    fixed = vitbench.load("test_vit", pretrained=False)
    errors = [
        (lambda: fixed.encode_image([torch.zeros(3, 160, 160)]), "only variable-size"),
        (lambda: encoder.encode_image([torch.zeros(3, 40, 64)]), "multiples of the patch"),
        (lambda: encoder.encode_image(images, layers=[-1]), "per-layer"),
        (lambda: encoder.encode_image([]), "empty"),
    ]
    for call, message in errors:
        with pytest.raises(VitbenchError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_square_batch_is_timms_standard_forward(timm_and_encoder):
    """A stacked (B, 3, H, W) batch still runs the ordinary timm path."""
    model, encoder = timm_and_encoder
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
    got = encoder.encode_image(x)
    torch.testing.assert_close(got.pooled, want, rtol=1e-5, atol=1e-5)
    assert got.token_mask is None and got.tokens.shape == (2, 15, 768)
